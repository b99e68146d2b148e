"""Exports of a run store in shapes other tools already read."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from satdask._files import write_new
from satdask.errors import RunError
from satdask.pipeline.runs import open_run


def reference_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The reference pipeline's batch output: `metadata` plus one entry per tile."""
    run = open_run(path)
    a = run.record
    ds = run.dataset()
    pred = ds["prediction"].values
    mean = ds["mean_intensity"].values
    status = ds["status"].values
    rows, cols = np.indices(pred.shape)
    status_names = ds["status"].attrs["flag_meanings"].split()
    predictions = [
        {
            "tile_id": f"r{r}_c{c}",
            "row": int(r),
            "col": int(c),
            "run_id": a["run_id"],
            "model_id": a["model"]["id"],
            "prediction": int(p) if p >= 0 else None,
            "mean_intensity": float(m) if math.isfinite(m) else None,
            "status": status_names[s],
        }
        for r, c, p, m, s in zip(
            rows.ravel(), cols.ravel(), pred.ravel(), mean.ravel(), status.ravel(), strict=True
        )
    ]
    metadata = {
        "run_id": a["run_id"],
        "model_path": a["model"]["uri"],
        "model_id": a["model"]["id"],
        "tiles_inferred": a["counts"]["tiles_inferred"],
        "tiles_failed": a["counts"]["tiles_failed"],
        "monitoring": a["monitoring"],
        "health_report": a["health"],
    }
    return {"metadata": metadata, "predictions": predictions}


def write_export(path: Path, text: str) -> None:
    """Exports never replace a file: nothing written before is overwritten."""
    if not path.parent.is_dir():
        raise RunError(f"{path}: output directory {path.parent} does not exist")
    try:
        write_new(path, text.encode())
    except FileExistsError:
        raise RunError(f"{path}: already exists; choose another --out") from None
