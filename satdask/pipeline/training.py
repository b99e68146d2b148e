"""Training over dask: tile means of every scene, computed in one graph, then fit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dask
import numpy as np

from satdask.core.features import STATUS_OK
from satdask.core.grid import EdgePolicy
from satdask.errors import ModelError, ValidationError
from satdask.io.lineage import scene_sha256, versions
from satdask.models.base import describe_inputs
from satdask.models.threshold import ThresholdModel
from satdask.pipeline._cluster import THREADS, check_scheduler, compute_client
from satdask.views.checks import validate_many
from satdask.views.scene import SceneLike, as_scene, scene_source
from satdask.views.tiles import tile_features

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

log = logging.getLogger("satdask.training")


def _check_same_inputs(scenes: Sequence[xr.DataArray], *, tile_size: int) -> None:
    """One model learns from one kind of input: the same band count and dtype everywhere."""
    kinds: dict[str, list[str]] = {}
    for s in scenes:
        kind = describe_inputs(s.sizes["band"], str(s.dtype))
        kinds.setdefault(kind, []).append(str(s.attrs.get("source", s.name)))
    if len(kinds) > 1:
        detail = "; ".join(f"{', '.join(uris)}: {kind}" for kind, uris in kinds.items())
        raise ValidationError(
            f"cannot train one model on scenes of different bands or dtypes ({detail}); "
            "select the same bands of each (--bands) or train one model per kind"
        )


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
    if not scenes:
        raise ModelError("train needs at least one scene")
    check_scheduler(scheduler)
    opened = [
        as_scene(s, tile_size=tile_size, tiles_per_chunk=tiles_per_chunk, bands=bands)
        for s in scenes
    ]
    reports = validate_many(opened, allow_mixed_crs=allow_mixed_crs, tile_size=tile_size, edge=edge)
    _check_same_inputs(opened, tile_size=tile_size)
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
                **scene_source(s).lineage(),
            }
            for r, m, s in zip(reports, means, opened, strict=True)
        ],
        "tile_count": int(sum(np.isfinite(m).sum() for m in means)),
        "config": {
            "tile_size": tile_size,
            "edge": edge,
            "bands": [int(b) for b in opened[0]["band"].values],
            "dtype": str(opened[0].dtype),
        },
        "versions": versions(),
    }
    if lineage["tile_count"] == 0:
        names = ", ".join(r.uri for r in reports)
        raise ModelError(f"cannot train: no valid tile in {names} (all nodata or too small)")
    model = ThresholdModel.fit(np.concatenate([m.ravel() for m in means]), lineage=lineage)
    log.info("trained threshold %.6g on %d tiles", model.threshold, lineage["tile_count"])
    return model
