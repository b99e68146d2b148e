"""The work of the satdask_daily DAG, as plain functions that call the satdask library.

Kept apart from the DAG file so it runs and is tested without Airflow. The DAG
imports this module inside its tasks only, so the scheduler's frequent parsing
of the DAG file never loads satdask (dask, xarray, rasterio: ~0.7 s). What
passes between tasks is JSON (Airflow XCom): plain dicts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import zarr

import satdask
from satdask.errors import RunError, SatdaskError
from satdask.io.store import ATTRS_KEY, decode_attrs

__all__ = ["RetrainRecommendedError", "health_gate", "output_path", "plan_runs", "run_scene"]


class RetrainRecommendedError(SatdaskError):
    """A run's health report detected drift and the retraining gate is on."""


def scene_stem(scene: str) -> str:
    """File name without suffix, for a path or a URL (its query string ignored)."""
    path = urlparse(scene).path if "://" in scene else scene
    stem = PurePosixPath(path.replace(os.sep, "/")).stem
    if not stem:
        raise SatdaskError(f"scenes: {scene!r} has no file name to name its run store after")
    return stem


def output_path(out_root: str | os.PathLike[str], run_date: str, scene: str) -> Path:
    """Where a scene's run for one run date lives: `{out_root}/{date}/{stem}.zarr`."""
    return Path(out_root) / run_date / f"{scene_stem(scene)}.zarr"


def plan_runs(
    scenes: Sequence[str],
    *,
    registry: str,
    model: str,
    out_root: str,
    run_date: str,
) -> list[dict[str, str]]:
    """Validate every scene and pin one model before any inference starts.

    The model reference (often `latest`) is resolved here, once, so every mapped
    run and every retry uses the same artifact even if a new model is saved
    while the DAG runs. Two scenes with one file stem would share an output path,
    so that is refused here rather than discovered as a clash later.
    """
    if isinstance(scenes, str) or not isinstance(scenes, Sequence) or not scenes:
        raise SatdaskError("params.scenes: give a non-empty list of scene paths or URLs")
    if not all(isinstance(s, str) and s for s in scenes):
        raise SatdaskError(f"params.scenes: every scene must be a non-empty string, got {scenes!r}")
    if not out_root:
        raise SatdaskError("params.out_root: give the directory that receives the run stores")
    artifact = satdask.ModelRegistry(registry).load(model or "latest")

    by_path: dict[Path, str] = {}
    planned = []
    for scene in scenes:
        opened = satdask.open_scene(scene)
        report = satdask.validate(opened)
        out = output_path(out_root, run_date, scene)
        if out in by_path:
            raise SatdaskError(
                f"params.scenes: {by_path[out]} and {scene} would both write {out}; "
                "rename one so each scene has its own file stem"
            )
        by_path[out] = scene
        planned.append(
            {
                "scene": report.uri,
                "out": str(out),
                "registry": str(registry),
                "model_id": artifact.id,
                "warnings": "; ".join(report.warnings),
            }
        )
    try:
        (Path(out_root) / run_date).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{Path(out_root) / run_date}: cannot create ({exc.strerror})") from None
    return planned


def run_scene(
    planned: Mapping[str, str], *, scheduler: str = "threads", overwrite: bool = False
) -> dict[str, Any]:
    """Run one planned scene; safe to repeat for the same run date.

    A complete store already at the output path from the same model and scene is
    this run's own earlier result (an attempt that finished writing but was not
    recorded as a success, or a cleared task): it is kept and reported, not
    recomputed. A killed attempt's finished blocks are resumed, and a store it
    moved into place but never marked complete is replaced.
    A complete store made from another model or scene is someone's result and is
    replaced only with `overwrite`; anything that is not a satdask store never is.
    """
    out = Path(planned["out"])
    artifact = satdask.ModelRegistry(planned["registry"]).load(planned["model_id"])
    state = _store_state(out)
    if state == "complete":
        existing = satdask.open_run(out)
        same_model = existing.attrs["model"]["sha256"] == artifact.sha256
        same_scene = existing.attrs["scene"]["uri"] == planned["scene"]
        if same_model and same_scene:
            return _summary(existing, planned, reused=True)
        if not overwrite:
            made_by = f"model {existing.attrs['model']['id']} on {existing.attrs['scene']['uri']}"
            raise RunError(
                f"{out}: already holds a complete run of {made_by}; "
                "set params.overwrite to replace it"
            )
    elif state == "foreign":
        raise RunError(f"{out}: exists and is not a satdask run store; refusing to replace it")
    # resume: an attempt killed mid-run left its finished blocks in a journal beside
    # `out`; the retry continues it (same scene, model and config) instead of failing.
    result = satdask.run_batch(
        planned["scene"],
        artifact,
        out,
        scheduler=scheduler,
        resume=True,
        overwrite=overwrite or state != "missing",
    )
    return _summary(result, planned, reused=False)


def _store_state(out: Path) -> str:
    """'missing', 'complete', 'incomplete' (a satdask store never marked done) or 'foreign'."""
    if not out.exists():
        return "missing"
    try:
        attrs = decode_attrs(dict(zarr.open_group(out, mode="r").attrs).get(ATTRS_KEY))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, OSError):
        return "foreign"
    if not isinstance(attrs, dict):
        return "foreign"
    return "complete" if attrs.get("complete") is True else "incomplete"


def _summary(run: Any, planned: Mapping[str, str], *, reused: bool) -> dict[str, Any]:
    return {
        "scene": planned["scene"],
        "out": str(run.path),
        "run_id": run.run_id,
        "model_id": run.attrs["model"]["id"],
        "counts": dict(run.counts),
        "health": run.health["status"],
        "should_retrain": run.should_retrain(),
        "reused": reused,
    }


def health_gate(runs: Sequence[Mapping[str, Any]], *, enabled: bool) -> dict[str, Any]:
    """Fail (when `enabled`) if any run's health report recommends retraining.

    The verdict is read back from each run store, not from the summaries passed
    between tasks, so the gate judges what was actually written.
    """
    drifted = []
    for summary in runs:
        run = satdask.open_run(summary["out"])
        if run.should_retrain():
            retrain = [r for r in run.health["recommendations"] if r.startswith("Retrain")]
            drifted.append(f"{run.path}: {' '.join(retrain)}")
    verdict = {"runs": len(runs), "retrain": drifted, "gate": enabled}
    if drifted and enabled:
        raise RetrainRecommendedError(
            f"retraining recommended for {len(drifted)} of {len(runs)} runs: " + " | ".join(drifted)
        )
    return verdict
