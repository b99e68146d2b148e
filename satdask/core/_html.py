"""HTML views of runs, model artifacts and validation reports, for Jupyter.

Pure functions from plain data (the mappings each object stores) to an HTML
string: no I/O, no IPython import, and no import of the classes they draw, whose
`_repr_html_` methods call down into this module.
Every value is escaped with ``html.escape``; scene URIs, error messages and
lineage come from files and must never be trusted as markup. The classes'
``_repr_html_`` methods call these, so a bare ``run`` at the end of a notebook
cell renders as a table.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["artifact_html", "report_html", "run_html"]

MAX_ERRORS_SHOWN = 10
_GOOD, _BAD, _NEUTRAL = "#1a7f37", "#bc4c00", "#57606a"
_BOX = (
    "font-family: var(--jp-content-font-family, sans-serif); font-size: 13px; "
    "line-height: 1.4; max-width: 60em"
)
_TH = "text-align: left; padding: 1px 12px 1px 0; font-weight: 600; vertical-align: top"
_TD = "text-align: left; padding: 1px 0; vertical-align: top"
_SECTION = "text-align: left; padding: 8px 0 2px 0; font-weight: 700; border-bottom: 1px solid #ccc"

Row = tuple[str, str]  # (label, HTML already escaped)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    """A number for people: 4 significant digits, thousands not in exponent form."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    if isinstance(value, int) or (
        math.isfinite(value) and value.is_integer() and abs(value) < 1e15
    ):
        return _e(f"{int(value):,}")
    if not math.isfinite(value):
        return _e(value)
    return _e(f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}")


def _short(digest: Any, n: int = 12) -> str:
    """A hash shortened for the eye, the full value in the tooltip."""
    text = str(digest or "-")
    return f'<code title="{_e(text)}">{_e(text[:n])}</code>'


def _badge(text: str, colour: str) -> str:
    return (
        f'<span style="background: {colour}; color: white; border-radius: 3px; '
        f'padding: 0 6px; font-size: 12px; margin-left: 6px">{_e(text)}</span>'
    )


def _list(items: Iterable[Any]) -> str:
    shown = [f"<li>{_e(item)}</li>" for item in items]
    return f'<ul style="margin: 0; padding-left: 1.2em">{"".join(shown)}</ul>' if shown else "-"


def _table(sections: Sequence[tuple[str, Sequence[Row]]]) -> str:
    body = []
    for title, rows in sections:
        if title:
            body.append(f'<tr><th colspan="2" style="{_SECTION}">{_e(title)}</th></tr>')
        body += [
            f'<tr><th style="{_TH}">{_e(k)}</th><td style="{_TD}">{v}</td></tr>' for k, v in rows
        ]
    return f'<table style="border-collapse: collapse; margin: 0">{"".join(body)}</table>'


def _card(
    title: str, badges: str, summary: str, sections: Sequence[tuple[str, Sequence[Row]]]
) -> str:
    return (
        f'<div class="satdask-repr" style="{_BOX}">'
        f'<div style="font-size: 14px; font-weight: 700">{title}{badges}</div>'
        f'<div style="color: {_NEUTRAL}; margin: 2px 0 4px 0">{summary}</div>'
        f"{_table(sections)}</div>"
    )


def _details(summary: str, mapping: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th style='{_TH}'>{_e(k)}</th><td style='{_TD}'>{_e(v)}</td></tr>"
        for k, v in mapping.items()
    )
    return f"<details><summary>{_e(summary)}</summary><table>{rows}</table></details>"


# --------------------------------------------------------------------------- run


def run_html(a: Mapping[str, Any], *, path: str) -> str:
    """A run's attributes: counts and health at a glance, then scene, model, config, errors."""
    c, h = a["counts"], a["health"]
    scene, model, config = a["scene"], a["model"], a["config"]
    preds = a["monitoring"]["predictions"]
    timings = a.get("timings", {})
    healthy = h["status"] == "healthy"
    badges = _badge(h["status"], _GOOD if healthy else _BAD)
    if h.get("drift_detected"):
        badges += _badge("retrain", _BAD)
    summary = _e(
        f"{c['tiles_inferred']} inferred, {c['tiles_skipped']} nodata, {c['tiles_failed']} failed "
        f"of {c['tiles_total']} tiles"
    )
    if "total_s" in timings:
        summary += _e(f" in {timings['total_s']:.2f} s")
    sections: list[tuple[str, Sequence[Row]]] = [
        ("Predictions", _prediction_rows(preds)),
        ("Health", _health_rows(h)),
        ("Scene", _scene_rows(scene)),
        (
            "Model",
            [
                ("id", _e(model.get("id") or "unregistered")),
                ("sha256", _short(model.get("sha256"))),
                ("artifact", _e(model.get("uri") or "-")),
            ],
        ),
        ("Config", _config_rows(config)),
        ("Store", _store_rows(a, path, timings)),
    ]
    errors = a.get("errors") or []
    if errors:
        sections.append((f"Errors ({len(errors)})", _error_rows(errors)))
    return _card(f"satdask run {_e(a['run_id'])}", badges, summary, sections)


def _prediction_rows(p: Mapping[str, Any]) -> list[Row]:
    def share(pct: Any) -> str:
        return "" if pct is None else f" ({_num(pct, 3)}%)"

    return [
        ("bright", f"{_num(p['bright'])}{share(p.get('bright_pct'))}"),
        ("dark", f"{_num(p['dark'])}{share(p.get('dark_pct'))}"),
    ]


def _health_rows(h: Mapping[str, Any]) -> list[Row]:
    return [
        ("status", _e(h["status"])),
        (
            "drift",
            _e(
                "detected"
                if h["drift_detected"]
                else "not detected"
                if h["drift_assessed"]
                else "not assessed"
            ),
        ),
        ("PSI", _num(h.get("psi"), 3)),
        ("mean shift", _num(h.get("mean_delta"))),
        ("failure rate", _num(h.get("failure_rate"), 3)),
        ("p95 tile latency", f"{_num(h.get('p95_tile_latency_ms'), 3)} ms"),
        ("reasons", _list(h.get("reasons", ()))),
        ("recommendations", _list(h.get("recommendations", ()))),
    ]


def _scene_rows(scene: Mapping[str, Any]) -> list[Row]:
    shape = scene.get("shape") or ["?", "?", "?"]
    return [
        ("file", _e(scene.get("uri"))),
        ("size", _e(f"{shape[2]} x {shape[1]} px, {shape[0]} band(s), {scene.get('dtype', '?')}")),
        ("CRS", _e(scene.get("crs") or "-")),
        ("nodata", _e(scene.get("nodata"))),
        ("acquired", _e(scene.get("acquisition_time") or "-")),
        ("sha256", _short(scene.get("sha256"))),
    ]


def _config_rows(config: Mapping[str, Any]) -> list[Row]:
    return [
        ("tile size", _e(f"{config.get('tile_size')} px, edge {config.get('edge')}")),
        ("bands", _e(", ".join(str(b) for b in config.get("bands", [])))),
        ("blocks", _e(f"{config.get('blocks')} of up to {_px(config.get('chunk_px'))}")),
        ("scheduler", _e(config.get("scheduler"))),
    ]


def _px(shape: Any) -> str:
    if isinstance(shape, Sequence) and not isinstance(shape, str):
        return " x ".join(str(n) for n in shape) + " px"
    return f"{shape} px"


def _store_rows(a: Mapping[str, Any], path: str, timings: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = [
        ("path", _e(path)),
        ("created", _e(a.get("created_at", "-"))),
    ]
    if timings:
        shown = {k: f"{v:.3f}" if isinstance(v, float) else v for k, v in timings.items()}
        rows.append(("timings (s)", _details(", ".join(shown)[:60], shown)))
    versions = a.get("versions")
    if isinstance(versions, Mapping) and versions:
        rows.append(("versions", _details(f"{len(versions)} packages", versions)))
    return rows


def _error_rows(errors: Sequence[Mapping[str, Any]]) -> list[Row]:
    rows = [
        (f"tile {tuple(e.get('tile', ()))}", _e(e.get("message", "")))
        for e in errors[:MAX_ERRORS_SHOWN]
    ]
    if len(errors) > MAX_ERRORS_SHOWN:
        rows.append(("...", _e(f"and {len(errors) - MAX_ERRORS_SHOWN} more in run.errors")))
    return rows


# --------------------------------------------------------------------------- model


def artifact_html(artifact: Mapping[str, Any]) -> str:
    """A registered model (id, kind, created_at, sha256, uri, parameters, lineage)."""
    params = artifact["parameters"]
    training = params.get("training") or {}
    lineage = artifact["lineage"]
    scalar = {k: v for k, v in params.items() if isinstance(v, int | float | str)}
    summary = _e(
        ", ".join(f"{k}={_plain(v)}" for k, v in scalar.items())
        + f"; trained on {lineage.get('tile_count', '?')} tiles"
    )
    sections: list[tuple[str, Sequence[Row]]] = [
        (
            "Artifact",
            [
                ("kind", _e(artifact["kind"])),
                ("created", _e(artifact["created_at"])),
                ("sha256", _short(artifact["sha256"])),
                ("file", _e(artifact["uri"])),
            ],
        ),
        ("Parameters", [(k, _num(v)) for k, v in scalar.items()]),
    ]
    if training:
        sections.append(("Training statistics", _training_rows(training)))
    sections.append(("Lineage", _lineage_rows(lineage)))
    title = f"satdask model {_e(artifact['id'])}"
    return _card(title, _badge(artifact["kind"], _NEUTRAL), summary, sections)


def _plain(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _training_rows(training: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = [
        ("tile count", _num(training.get("tile_count"))),
        ("tile mean", _num(training.get("mean"))),
        ("tile std", _num(training.get("std"))),
    ]
    hist = training.get("histogram")
    if isinstance(hist, Mapping) and hist.get("counts"):
        rows.append(("histogram", _histogram(hist["edges"], hist["counts"])))
    return rows


def _histogram(edges: Sequence[float], counts: Sequence[int]) -> str:
    """Tile means of the training set as inline bars, one per bin."""
    top = max(max(counts), 1)
    bars = "".join(
        f'<div title="{_e(f"{lo:.6g} .. {hi:.6g}: {n} tiles")}" style="display: inline-block; '
        f"width: 10px; height: {max(1, round(40 * n / top))}px; background: {_NEUTRAL}; "
        f'margin-right: 1px; vertical-align: bottom"></div>'
        for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=False)
    )
    span = _e(f"{edges[0]:.6g} .. {edges[-1]:.6g}")
    return f'<div style="height: 42px; display: flex; align-items: flex-end">{bars}</div>{span}'


def _lineage_rows(lineage: Mapping[str, Any]) -> list[Row]:
    scenes = lineage.get("scenes") or []
    described = [
        f"{s.get('uri')} ({s.get('tiles', '?')} tiles, sha256 {str(s.get('sha256', ''))[:12]})"
        for s in scenes
        if isinstance(s, Mapping)
    ]
    rows: list[Row] = [
        ("trained", _e(lineage.get("trained_at", "-"))),
        ("scenes", _list(described)),
    ]
    config = lineage.get("config")
    if isinstance(config, Mapping):
        rows.append(("config", _e(", ".join(f"{k}={v}" for k, v in config.items()))))
    versions = lineage.get("versions")
    if isinstance(versions, Mapping) and versions:
        rows.append(("versions", _details(f"{len(versions)} packages", versions)))
    return rows


# --------------------------------------------------------------------------- validation


def report_html(report: Mapping[str, Any]) -> str:
    """A validation report's fields: the scene's facts, and its warnings in plain sight."""
    r = report
    n = len(r["warnings"])
    badge = _badge("valid", _GOOD) + (_badge(f"{n} warning{'s' * (n != 1)}", _BAD) if n else "")
    summary = _e(f"{r['width']} x {r['height']} px, {r['bands']} band(s), {r['dtype']}, {r['crs']}")
    rows: list[Row] = [
        ("file", _e(r["uri"])),
        ("size", _e(f"{r['width']} x {r['height']} px")),
        ("bands", _e(f"{r['bands']} x {r['dtype']}")),
        ("CRS", _e(r["crs"] or "-")),
        ("nodata", _e(r["nodata"])),
        ("block shape", _e(f"{r['block_shape'][0]} x {r['block_shape'][1]} px")),
        ("acquired", _e(r["acquisition_time"] or "-")),
        ("warnings", _list(r["warnings"]) if n else "none"),
    ]
    name = Path(r["uri"]).name or r["uri"]
    return _card(f"validation of {_e(name)}", badge, summary, [("", rows)])
