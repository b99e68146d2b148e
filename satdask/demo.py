"""`satdask demo`: every step on a generated scene, on a LocalCluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from satdask.core.grid import size_text
from satdask.io.registry import ModelRegistry
from satdask.io.sample import write_sample
from satdask.pipeline._cluster import compute_client
from satdask.pipeline.batch import run_batch
from satdask.pipeline.runs import RunResult
from satdask.pipeline.training import train
from satdask.render import write_prediction_png
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
    ds = result.dataset()
    png = write_prediction_png(
        ds["prediction"].values, ds["status"].values, workdir / "predictions.png"
    )
    p = result.monitoring["predictions"]
    echo(
        f"[5/5] show     {p['bright']} bright / {p['dark']} dark tiles, health "
        f"{result.health['status']}; map: {png}; inspect: satdask runs show {out}"
    )
    return result
