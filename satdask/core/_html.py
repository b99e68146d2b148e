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

from satdask.core.schema import (
    Coverage,
    HealthReport,
    Predictions,
    RunConfig,
    RunRecord,
    SceneRecord,
    TileError,
    scene_size,
)

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


def run_html(a: RunRecord, *, path: str) -> str:
    """A run's record: counts and health at a glance, then scene, model, config, errors."""
    c, h = a["counts"], a["health"]
    scene, model, config = a["scene"], a["model"], a["config"]
    preds = a["monitoring"]["predictions"]
    timings = a.get("timings")
    coverage = a.get("coverage")
    badges = _badge(h["status"], _GOOD if h["status"] == "healthy" else _BAD)
    if h.get("drift_detected"):
        badges += _badge("retrain", _BAD)
    summary = _e(
        f"{c['tiles_inferred']} inferred, {c['tiles_skipped']} nodata, {c['tiles_failed']} failed "
        f"of {c['tiles_total']} tiles"
    )
    if timings and "total_s" in timings:
        summary += _e(f" in {timings['total_s']:.2f} s")
    if coverage and coverage["pixels_uncovered"]:
        summary += _e(f"; {_uncovered(coverage)}")
    sections: list[tuple[str, Sequence[Row]]] = [
        ("Predictions", _prediction_rows(preds)),
        ("Health", _health_rows(h)),
        ("Scene", _scene_rows(scene, coverage)),
        (
            "Model",
            [
                ("id", _e(model.get("id") or "unregistered")),
                ("sha256", _short(model.get("sha256"))),
                ("artifact", _e(model.get("uri") or "-")),
            ],
        ),
        ("Config", _config_rows(config)),
        ("Store", _store_rows(a, path, timings or {})),
    ]
    errors = a.get("errors") or []
    if errors:
        sections.append((f"Errors ({len(errors)})", _error_rows(errors)))
    return _card(f"satdask run {_e(a['run_id'])}", badges, summary, sections)


def _uncovered(coverage: Coverage) -> str:
    """How many pixels no tile covers, and where: `12,345 px (2.1%) in no tile`."""
    pct = 100 * coverage["fraction_uncovered"]
    return f"{coverage['pixels_uncovered']:,} px ({pct:.2g}%) in no tile"


def _prediction_rows(p: Predictions) -> list[Row]:
    def share(pct: Any) -> str:
        return "" if pct is None else f" ({_num(pct, 3)}%)"

    if "classes" in p:  # a pixel or window model's classes, by name
        pct = p.get("classes_pct") or {}
        return [(name, f"{_num(n)}{share(pct.get(name))}") for name, n in p["classes"].items()]
    return [
        ("bright", f"{_num(p.get('bright'))}{share(p.get('bright_pct'))}"),
        ("dark", f"{_num(p.get('dark'))}{share(p.get('dark_pct'))}"),
    ]


_VERDICT_COLOURS = {"ok": _GOOD, "retrain": _BAD, "investigate": _BAD}


def _health_rows(h: HealthReport) -> list[Row]:
    """Status, then one row per check as the report judged it, then its words."""
    rows: list[Row] = [("status", _e(h["status"]))]
    for check in h.get("checks", ()):
        verdict = check["verdict"]
        shown = _num(check["value"], 3)
        if check["limit"] is not None:
            shown += _e(f" (limit {_plain_number(check['limit'])})")
        rows.append(
            (check["name"], shown + _badge(verdict, _VERDICT_COLOURS.get(verdict, _NEUTRAL)))
        )
    rows += [
        ("reasons", _list(h.get("reasons", ()))),
        ("recommendations", _list(h.get("recommendations", ()))),
    ]
    return rows


def _plain_number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _scene_rows(scene: SceneRecord, coverage: Coverage | None) -> list[Row]:
    rows = [
        ("file", _e(scene.get("uri"))),
        ("size", _e(f"{scene_size(scene.get('shape') or [])}, {scene.get('dtype', '?')}")),
        ("CRS", _e(scene.get("crs") or "-")),
        ("nodata", _e(scene.get("nodata"))),
        ("acquired", _e(scene.get("acquisition_time") or "-")),
        ("sha256", _short(scene.get("sha256"))),
    ]
    if coverage and coverage["pixels_uncovered"]:
        rows.append(
            (
                "not inferred",
                _e(
                    f"{_uncovered(coverage)}: the last {coverage['rows_uncovered']} rows and "
                    f"{coverage['cols_uncovered']} cols hold no whole tile"
                ),
            )
        )
    return rows


def _config_rows(config: RunConfig) -> list[Row]:
    return [
        ("tile size", _e(f"{config.get('tile_size')} px, edge {config.get('edge')}")),
        ("bands", _e(", ".join(str(b) for b in config.get("bands", [])))),
        ("blocks", _e(f"{config.get('blocks')} of up to {_px(config.get('chunk_px'))}")),
        ("scheduler", _e(config.get("scheduler"))),
    ]


def _px(shape: Any) -> str:
    """A (rows, cols) shape in pixels, in the one order satdask prints sizes."""
    if isinstance(shape, Sequence) and not isinstance(shape, str) and len(shape) == 2:
        return f"{shape[0]} rows x {shape[1]} cols"
    return f"{shape} px"


def _store_rows(a: RunRecord, path: str, timings: Mapping[str, Any]) -> list[Row]:
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


def _error_rows(errors: Sequence[TileError]) -> list[Row]:
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
    size = scene_size([r["bands"], r["height"], r["width"]])
    summary = _e(f"{size}, {r['dtype']}, {r['crs']}")
    rows: list[Row] = [
        ("file", _e(r["uri"])),
        ("size", _e(size)),
        ("dtype", _e(r["dtype"])),
        ("CRS", _e(r["crs"] or "-")),
        ("nodata", _e(r["nodata"])),
        ("block shape", _e(_px(r["block_shape"]))),
        ("acquired", _e(r["acquisition_time"] or "-")),
        ("warnings", _list(r["warnings"]) if n else "none"),
    ]
    name = Path(r["uri"]).name or r["uri"]
    return _card(f"validation of {_e(name)}", badge, summary, [("", rows)])
