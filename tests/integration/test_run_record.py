"""The run record through every face: the CLI summary, reprs, HTML, plots and export.

Real stores written by `run_batch`; an "old" store is a real one whose record is
rewritten to what an earlier satdask wrote (no health checks, no coverage, no
resume, no timings), the way a store on disk from before these sections looks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import zarr

from satdask import ThresholdModel, open_run, run_batch
from satdask.cli import _summary, main
from satdask.core.health import HealthPolicy, health_checks
from satdask.errors import RunError
from satdask.export import reference_json
from satdask.io.store import decode_attrs
from satdask.plot import health_table, prediction_map, styled_health_table

matplotlib.use("Agg")

import matplotlib.pyplot as plt

LATER_SECTIONS = ("coverage", "resume", "timings")


@pytest.fixture(autouse=True)
def close_figures() -> None:
    yield
    plt.close("all")


def rewrite_record(path: Path, change: Callable[[dict], dict]) -> None:
    group = zarr.open_group(path, mode="r+")
    group.attrs["satdask"] = change(decode_attrs(group.attrs["satdask"]))


def as_older_satdask_wrote_it(attrs: dict) -> dict:
    old = {k: v for k, v in attrs.items() if k not in LATER_SECTIONS}
    old["health"] = {k: v for k, v in attrs["health"].items() if k != "checks"}
    counts = attrs["monitoring"]["counts"]
    old["monitoring"] = {
        **attrs["monitoring"],
        "counts": {k: v for k, v in counts.items() if k != "read_retries"},
    }
    return old


@pytest.fixture
def ragged_run(geotiff, tmp_path: Path):
    """600 x 700 px in 256 px tiles: 2 x 2 tiles, and strips of 88 rows and 188 cols in none."""
    data = np.full((3, 600, 700), 500, dtype=np.uint16)
    data[:, :256, :256] = 100
    path = geotiff(data, nodata=0)
    return run_batch(
        path, ThresholdModel(threshold=300.0), tmp_path / "r.zarr", scheduler="threads"
    )


def test_the_summary_prints_sizes_in_one_order_and_the_pixels_in_no_tile(ragged_run) -> None:
    text = _summary(ragged_run)
    assert "(3 bands x 600 rows x 700 cols, EPSG:32633)" in text
    uncovered = 600 * 700 - 512 * 512
    assert (
        f"  pixels {uncovered:,} of 420,000 (37.6%) in no tile: the last 88 rows and 188 cols "
        "(--edge pad infers them)"
    ) in text.splitlines()
    assert "  tiles  4 total, 4 inferred, 0 nodata, 0 failed" in text.splitlines()


def test_a_store_from_an_older_satdask_opens_and_renders_everywhere(
    ragged_run, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded_status = ragged_run.health["status"]
    rewrite_record(ragged_run.path, as_older_satdask_wrote_it)
    run = open_run(ragged_run.path)
    assert "checks" not in run.attrs["health"] and "coverage" not in run.attrs

    # the checks, judged from its own figures by its recorded policy; its status kept
    policy = HealthPolicy(**run.attrs["health"]["policy"])
    assert run.health["checks"] == health_checks(run.monitoring, policy=policy)
    assert run.health["status"] == recorded_status
    assert list(health_table(run)["verdict"]) == [c["verdict"] for c in run.health["checks"]]
    assert "PSI" in styled_health_table(run).to_html()

    assert repr(run).endswith(f"4 tiles, 4 inferred, 0 nodata, 0 failed; {recorded_status}>")
    html = run._repr_html_()
    assert "failure rate" in html and "in no tile" not in html  # no coverage recorded

    text = _summary(run)
    assert "  blocks" not in text and "  time" not in text and "  pixels" not in text
    assert main(["runs", "show", str(run.path)]) == 0
    assert capsys.readouterr().out.strip() == text

    # the plot still hatches the strips, from the grid's geometry
    ax = prediction_map(run).axes[0]
    label = ax.get_legend().get_texts()[-1].get_text()
    assert label == f"in no tile ({600 * 700 - 512 * 512:,} px, 38%)"
    assert reference_json(run.path)["metadata"]["health_report"]["checks"]


def test_a_store_whose_record_lacks_a_section_is_refused_by_name(
    ragged_run, capsys: pytest.CaptureFixture[str]
) -> None:
    rewrite_record(ragged_run.path, lambda a: {k: v for k, v in a.items() if k != "health"})
    with pytest.raises(RunError, match=r"r\.zarr: not a satdask run record \(missing health\)"):
        open_run(ragged_run.path)
    assert main(["runs", "show", str(ragged_run.path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing health" in err and str(ragged_run.path) in err


def test_a_run_where_every_tile_was_nodata_says_no_data_everywhere(geotiff, tmp_path: Path) -> None:
    path = geotiff(np.zeros((2, 512, 512), dtype=np.uint16), nodata=0)
    run = run_batch(path, ThresholdModel(threshold=1.0), tmp_path / "r.zarr", scheduler="threads")
    assert run.counts["tiles_skipped"] == 4
    assert run.health["status"] == "no data"
    assert not run.should_retrain()
    assert repr(run).endswith("4 tiles, 0 inferred, 4 nodata, 0 failed; no data>")
    lines = _summary(run).splitlines()
    assert "  health no data, drift=no, psi=-" in lines
    assert lines[-1] == (
        "  - No data: none of the 4 tiles had a valid pixel, so nothing was inferred "
        "(check the scene's nodata value and the bands)."
    )
    assert ">no data</span>" in run._repr_html_()
    assert health_table(run).attrs["status"] == "no data"
