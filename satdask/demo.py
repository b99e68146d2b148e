"""`satdask demo`: every step on a generated scene, on a LocalCluster.

Its picture, predictions.png, is drawn by `satdask.render` with numpy, text included,
so the demo keeps needing only the core install: matplotlib lives in the notebooks extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from satdask.core.features import STATUS_FAILED, STATUS_NODATA, STATUS_OK
from satdask.core.grid import size_text
from satdask.io.registry import ModelRegistry
from satdask.io.sample import write_sample
from satdask.pipeline._cluster import compute_client
from satdask.pipeline.batch import run_batch
from satdask.pipeline.runs import RunResult
from satdask.pipeline.training import train
from satdask.render import COLOURS, compose, prediction_rgb, write_png
from satdask.views.checks import validate


def run_demo(workdir: Path, *, size: int = 4096, echo: Callable[[str], None] = print) -> RunResult:
    """Sample -> validate -> train -> infer -> show; the demo's own folder is reused."""
    workdir.mkdir(parents=True, exist_ok=True)
    scene = workdir / f"sample-{size}.tif"
    if not scene.exists():
        echo(f"[1/5] sample   writing {scene} ({size_text(size, size, 4)} uint16 COG)")
        write_sample(scene, size=size, bands=4, dtype="uint16", seed=0)
    else:
        echo(f"[1/5] sample   reusing {scene}")
    report = validate(scene)
    echo(
        f"[2/5] validate {size_text(report.height, report.width, report.bands)} {report.dtype}, "
        f"{report.crs}, acquired {report.acquisition_time}, {len(report.warnings)} warnings"
    )
    out = workdir / "run.zarr"
    with compute_client("local") as client:
        model = train([scene], scheduler=client)
        artifact = ModelRegistry(workdir / "models").save(model)
        echo(f"[3/5] train    model {artifact.id} threshold={model.threshold:.6g}")
        result = run_batch(scene, artifact, out, client=client, overwrite=True)
    c, seconds = result.counts, result.attrs["timings"]["total_s"]
    echo(
        f"[4/5] infer    {c['tiles_inferred']} tiles inferred, {c['tiles_skipped']} nodata, "
        f"{c['tiles_failed']} failed on a LocalCluster in {seconds:.2f} s"
    )
    png = write_picture(result, workdir / "predictions.png", scene=scene.name)
    p = result.monitoring["predictions"]
    echo(
        f"[5/5] show     {p['bright']} bright / {p['dark']} dark tiles, health "
        f"{result.health['status']}; map: {png}; inspect: satdask runs show {out}"
    )
    return result


def write_picture(run: RunResult, path: Path, *, scene: str) -> Path:
    """predictions.png: the tile map under a title (scene, model, dates) and beside a
    legend (each class's colour, name and tile count)."""
    ds = run.dataset()
    prediction, status = ds["prediction"].values, ds["status"].values
    record = run.record
    ok = status == STATUS_OK
    counts = {
        "bright": int(np.count_nonzero(ok & (prediction == 1))),
        "dark": int(np.count_nonzero(ok & (prediction == 0))),
        "nodata": int(np.count_nonzero(status == STATUS_NODATA)),
        "failed": int(np.count_nonzero(status == STATUS_FAILED)),
    }
    acquired = (record["scene"].get("acquisition_time") or "unknown")[:16].replace("T", " ")
    model = record["model"]
    title = [
        scene,
        f"model {str(model['id'])[:8] if model.get('id') else 'unregistered'}, "
        f"sha256 {model['sha256'][:12]}",
        f"acquired {acquired}, run {record['created_at'][:16].replace('T', ' ')} utc",
    ]
    legend = [(COLOURS[name], f"{name:<6} {n}") for name, n in counts.items()]
    tiles = prediction_rgb(prediction, status, scale=max(1, 512 // max(prediction.shape)))
    image = compose(
        tiles,
        title=title,
        legend=legend,
        legend_title=f"{sum(counts.values())} tiles",
        extent=_extent(ds["spatial_ref"].attrs.get("GeoTransform"), prediction.shape),
        crs=record["scene"]["crs"],
    )
    write_png(image, path)
    return path


def _extent(
    geotransform: str | None, shape: tuple[int, ...]
) -> tuple[float, float, float, float] | None:
    """(left, bottom, right, top) of the tile grid from its GDAL GeoTransform text."""
    if not geotransform:
        return None
    c, a, _, f, _, e = (float(v) for v in geotransform.split())
    rows, cols = shape
    ys = (f, f + e * rows)
    return (c, min(ys), c + a * cols, max(ys))
