"""Training over dask: tile means of every scene, computed in one graph, then fit."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import xarray as xr

from satdask.cluster import THREADS, check_scheduler, compute_client
from satdask.errors import ModelError
from satdask.features import STATUS_OK
from satdask.grid import EdgePolicy
from satdask.lineage import versions
from satdask.models.threshold import ThresholdModel
from satdask.scene import open_scene
from satdask.stac import stac_lineage
from satdask.tiles import tile_features
from satdask.validate import validate_many

if TYPE_CHECKING:
    from distributed import Client

SceneLike = str | os.PathLike[str] | xr.DataArray
log = logging.getLogger("satdask.training")


def as_scene(scene: SceneLike, **options: Any) -> xr.DataArray:
    return scene if isinstance(scene, xr.DataArray) else open_scene(scene, **options)


def train(
    scenes: Sequence[SceneLike],
    *,
    tile_size: int = 256,
    tiles_per_chunk: int | None = None,
    edge: EdgePolicy = "skip",
    bands: Sequence[int] | None = None,
    scheduler: str | Client | None = "local",
    allow_mixed_crs: bool = False,
) -> ThresholdModel:
    """Fit a ThresholdModel on every valid tile of `scenes`, with its lineage."""
    from satdask.lineage import scene_sha256

    if not scenes:
        raise ModelError("train needs at least one scene")
    check_scheduler(scheduler)
    opened = [
        as_scene(s, tile_size=tile_size, tiles_per_chunk=tiles_per_chunk, bands=bands)
        for s in scenes
    ]
    reports = validate_many(opened, allow_mixed_crs=allow_mixed_crs)
    features = [tile_features(s, edge=edge) for s in opened]
    lazy_means = [f.mean_intensity.where(f.status == STATUS_OK).data for f in features]
    with compute_client(scheduler) as client:
        means = dask.compute(*lazy_means, scheduler=client or THREADS)
    lineage = {
        "trained_at": datetime.now(UTC).isoformat(),
        "scenes": [
            {
                "uri": r.uri,
                "sha256": scene_sha256(r.uri),
                "crs": r.crs,
                "acquisition_time": r.acquisition_time,
                "tiles": int(np.isfinite(m).sum()),
                **stac_lineage(s),
            }
            for r, m, s in zip(reports, means, opened, strict=True)
        ],
        "tile_count": int(sum(np.isfinite(m).sum() for m in means)),
        "config": {
            "tile_size": tile_size,
            "edge": edge,
            "bands": [int(b) for b in opened[0]["band"].values],
        },
        "versions": versions(),
    }
    if lineage["tile_count"] == 0:
        names = ", ".join(r.uri for r in reports)
        raise ModelError(f"cannot train: no valid tile in {names} (all nodata or too small)")
    model = ThresholdModel.fit(np.concatenate([m.ravel() for m in means]), lineage=lineage)
    log.info("trained threshold %.6g on %d tiles", model.threshold, lineage["tile_count"])
    return model
