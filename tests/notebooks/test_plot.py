"""satdask.plot: quicklooks that never read the full scene, maps, and the health table."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import dask
import matplotlib
import numpy as np
import pytest
import rasterio
import zarr
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from support import corrupt_block

from satdask import ModelRegistry, ThresholdModel, open_scene, run_batch, scene_grid
from satdask.core.features import STATUS_FAILED, STATUS_NODATA
from satdask.errors import PlotError
from satdask.io.store import decode_attrs
from satdask.plot import health_table, prediction_map, quicklook, styled_health_table
from satdask.render import COLOURS

matplotlib.use("Agg")  # not MPLBACKEND: the notebook tests' kernels must keep their own

import matplotlib.pyplot as plt


@pytest.fixture(autouse=True)
def close_figures() -> None:
    yield
    plt.close("all")


def _no_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("a dask computation ran; the quicklook must read decimated pixels")


def test_quicklook_is_a_small_rgba_view_in_map_coordinates(sample_tif: Path) -> None:
    scene = open_scene(sample_tif)
    quick = quicklook(scene, max_size=256)
    assert quick.shape == (256, 256, 4) and quick.dtype == np.float32
    assert float(quick.min()) >= 0.0 and float(quick.max()) <= 1.0
    assert quick.attrs["bands"] == [3, 2, 1]  # 4 bands, no colour interpretation
    assert quick.attrs["method"] == "decimated read"
    left, bottom, right, top = scene.rio.bounds()
    assert quick.attrs["extent"] == pytest.approx((left, right, bottom, top))
    alpha = quick.values[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # the sample's nodata collar
    assert alpha[128, 128] == 1


def test_quicklook_computes_nothing_with_dask(sample_tif: Path) -> None:
    scene = open_scene(sample_tif)
    with dask.config.set(scheduler=_no_compute):
        quicklook(scene, max_size=128)
        quicklook(scene.isel(x=slice(256, 512), y=slice(0, 256)))


def test_quicklook_of_a_remote_cog_reads_its_overviews_not_the_full_scene(
    http_root: tuple[str, Path], sample_tif: Path, request: pytest.FixtureRequest
) -> None:
    RangeHandler = _root_conftest(request).RangeHandler  # noqa: N806  (the fixture's class)
    base, root = http_root
    shutil.copy(sample_tif, root / "scene.tif")
    scene = open_scene(f"{base}/scene.tif")
    RangeHandler.bytes_sent = 0
    quick = quicklook(scene, max_size=256)
    assert quick.shape[:2] == (256, 256)
    size = (root / "scene.tif").stat().st_size
    assert RangeHandler.bytes_sent < size / 10, (RangeHandler.bytes_sent, size)  # 4% measured


def _root_conftest(request: pytest.FixtureRequest) -> ModuleType:
    """tests/conftest.py as pytest loaded it (another conftest shadows the name `conftest`)."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    for plugin in request.config.pluginmanager.get_plugins():
        if isinstance(plugin, ModuleType) and Path(plugin.__file__ or "").resolve() == path:
            return plugin
    raise LookupError(path)


def test_quicklook_of_a_computed_array_falls_back_to_a_lazy_coarsen(sample_tif: Path) -> None:
    scene = open_scene(sample_tif)
    direct = quicklook(scene, max_size=256)
    computed = quicklook(scene + 0, max_size=256, limits=direct.attrs["limits"])
    assert computed.attrs["method"] == "coarsen"  # attrs survive `+`, the file's pixels do not
    assert computed.shape == direct.shape
    both = (direct.values[..., 3] == 1) & (computed.values[..., 3] == 1)
    assert both.mean() > 0.7  # all but the 64 px nodata collar
    # A 4 x 4 block mean and the COG's averaged overview: the same picture
    np.testing.assert_allclose(computed.values[both, :3], direct.values[both, :3], atol=0.02)


def test_a_zoomed_window_is_read_at_full_resolution_with_the_given_stretch(
    sample_tif: Path,
) -> None:
    scene = open_scene(sample_tif)
    grid = scene_grid(scene)
    limits = [(1000.0, 9000.0)] * 3
    window = Window(*grid.window(1, 2))
    tile = scene.isel(y=slice(256, 512), x=slice(512, 768))
    quick = quicklook(tile, limits=limits)
    assert quick.shape == (256, 256, 4)
    with rasterio.open(sample_tif) as src:
        pixels = src.read([3, 2, 1], window=window).astype(np.float64)
    expected = np.clip((pixels - 1000.0) / 8000.0, 0, 1).transpose(1, 2, 0)
    np.testing.assert_allclose(quick.values[..., :3], expected, atol=1e-6)


def test_quicklook_uses_the_files_colour_interpretation_and_grey_for_one_band(
    geotiff,
) -> None:
    data = np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 64, 64) + 1
    path = geotiff(data, nodata=0)
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    assert quicklook(open_scene(path)).attrs["bands"] == [3, 2, 1]
    assert quicklook(open_scene(path), rgb=(1, 2, 3)).attrs["bands"] == [1, 2, 3]
    grey = quicklook(open_scene(path, bands=[2]))
    assert grey.attrs["bands"] == [2]
    np.testing.assert_array_equal(grey.values[..., 0], grey.values[..., 1])
    np.testing.assert_array_equal(grey.values[..., 0], grey.values[..., 2])
    with pytest.raises(PlotError, match=r"rgb must name 1 or 3 of the scene's bands \[1, 2, 3\]"):
        quicklook(open_scene(path), rgb=(1, 4, 2))


def test_plot_errors_belong_to_the_tree_and_name_the_argument(geotiff) -> None:
    scene = open_scene(geotiff(np.ones((3, 64, 64), dtype=np.uint16), nodata=0))
    with pytest.raises(PlotError, match="max_size must be >= 1, got 0"):
        quicklook(scene, max_size=0)
    with pytest.raises(PlotError, match=r"one \(low, high\) per channel \(3\), got 1"):
        quicklook(scene, limits=[(0.0, 1.0)])
    assert issubclass(PlotError, ValueError)


@pytest.fixture
def mixed_run(geotiff, tmp_path: Path):
    """A 3 x 3 tile run with every class: bright, dark, one nodata and one failed tile."""
    data = np.full((3, 768, 768), 100, dtype=np.uint16)
    data[:, 256:, :] = 900  # rows 1-2 bright
    data[:, :256, :256] = 0  # tile (0, 0) all nodata
    path = geotiff(data, nodata=0)
    corrupt_block(path, x=2, y=1)  # tile (1, 2) unreadable
    return run_batch(
        path, ThresholdModel(threshold=500.0), tmp_path / "run.zarr", scheduler="threads"
    )


def test_prediction_map_marks_every_class_and_counts_it_in_the_legend(mixed_run) -> None:
    fig = prediction_map(mixed_run)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["bright (5)", "dark (2)", "nodata (1)", "failed (1)"]
    background, overlay = ax.images  # the scene's quicklook, then the classes
    assert background.get_array().shape[2] == 4
    classes = np.asarray(overlay.get_array())
    status = mixed_run.dataset()["status"].values
    assert (status == STATUS_NODATA).sum() == 1 and (status == STATUS_FAILED).sum() == 1
    red = np.array(COLOURS["failed"]) / 255
    np.testing.assert_allclose(classes[1, 2, :3], red, atol=1e-6)
    assert len(ax.collections[-2].get_offsets()) == 1  # one cross, on the failed tile
    assert "scene.tif" in ax.get_title() and mixed_run.run_id[:8] in ax.get_title()


def test_prediction_map_without_the_scene_file_draws_the_classes_alone(
    mixed_run, tmp_path: Path
) -> None:
    Path(mixed_run.attrs["scene"]["uri"]).unlink()
    fig = prediction_map(mixed_run.path)  # a path works as well as a RunResult
    assert len(fig.axes[0].images) == 1


def test_prediction_map_shows_the_whole_scene_and_hatches_the_strips_in_no_tile(
    geotiff, tmp_path: Path
) -> None:
    """Edge skip leaves the last 600 % 256 rows and 700 % 256 cols uninferred: in view, hatched."""
    data = np.full((3, 600, 700), 500, dtype=np.uint16)
    path = geotiff(data, nodata=0)
    run = run_batch(path, ThresholdModel(threshold=100.0), tmp_path / "r.zarr", scheduler="threads")
    ax = prediction_map(run).axes[0]
    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
        pixel_area = abs(src.transform.a * src.transform.e)
    assert ax.get_xlim() == pytest.approx((left, right))
    assert ax.get_ylim() == pytest.approx((bottom, top))
    strips = [p for p in ax.patches if p.get_gid() == "uncovered"]
    assert [p.get_hatch() for p in strips] == ["//", "//"]
    uncovered = 600 * 700 - 512 * 512
    area = sum(p.get_width() * p.get_height() for p in strips)
    assert area == pytest.approx(uncovered * pixel_area)  # the strips, without overlap
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-1] == f"in no tile ({uncovered:,} px, {100 * uncovered / 420000:.2g}%)"


def test_prediction_map_of_a_scene_the_tiles_cover_has_no_strip(mixed_run) -> None:
    ax = prediction_map(mixed_run).axes[0]
    assert not [p for p in ax.patches if p.get_gid() == "uncovered"]
    assert not any("no tile" in t.get_text() for t in ax.get_legend().get_texts())


def test_health_table_is_a_dataframe_of_the_reports_checks(
    sample_tif: Path, sample_registry: Path, tmp_path
) -> None:
    import pandas as pd

    artifact = ModelRegistry(sample_registry).load()
    run = run_batch(sample_tif, artifact, tmp_path / "run.zarr", scheduler="threads")
    table = health_table(run)
    assert type(table) is pd.DataFrame
    assert list(table.columns) == ["value", "limit", "verdict", "reason"]
    checks = run.health["checks"]
    assert list(table.index) == [c["name"] for c in checks]  # one row per check
    assert table.index.name == "check"
    for check in checks:
        row = table.loc[check["name"]]
        assert row["verdict"] == check["verdict"] == "ok"
        assert row["value"] == check["value"] and row["limit"] == check["limit"]
    assert table.loc["PSI", "limit"] == 0.2
    assert table.attrs["status"] == "healthy" and table.attrs["run_id"] == run.run_id


def test_health_table_flags_drift_exactly_where_the_report_does(
    sample_tif: Path, tmp_path: Path
) -> None:
    dim = ThresholdModel.fit(np.linspace(100.0, 300.0, 50))  # trained on far darker tiles
    run = run_batch(sample_tif, dim, tmp_path / "run.zarr", scheduler="threads")
    table = health_table(run.path)  # a path works as well as a RunResult
    assert run.health["drift_detected"]
    assert table.loc["PSI", "verdict"] == "retrain"
    assert table.loc["mean shift", "verdict"] == "retrain"
    assert table.loc["failure rate", "verdict"] == "ok"
    failing = table[table["verdict"] != "ok"]
    assert len(failing) == len(run.health["recommendations"])
    for reason, text in zip(failing["reason"], run.health["recommendations"], strict=True):
        assert reason and reason in text


def test_styled_health_table_renders_reasons_in_full_and_highlights_drift(
    sample_tif: Path, tmp_path: Path
) -> None:
    dim = ThresholdModel.fit(np.linspace(100.0, 300.0, 50))
    run = run_batch(sample_tif, dim, tmp_path / "run.zarr", scheduler="threads")
    styled = styled_health_table(run)
    assert styled.data.equals(health_table(run))
    html = styled.to_html()
    reasons = [c["reason"] for c in run.health["checks"] if c["reason"]]
    assert max(map(len, reasons)) > 60  # pandas would cut a plain DataFrame's text at 50
    for reason in reasons:
        assert reason in html  # in full
    assert "background-color: #bc4c00" in html
    assert f"run {run.run_id}: health degraded" in html


def test_health_table_of_a_store_without_checks_judges_its_recorded_figures(
    sample_tif: Path, tmp_path: Path
) -> None:
    """A store from before health checks were recorded still gets its rows, by the same rules."""
    dim = ThresholdModel.fit(np.linspace(100.0, 300.0, 50))
    run = run_batch(sample_tif, dim, tmp_path / "run.zarr", scheduler="threads")
    group = zarr.open_group(run.path, mode="r+")
    attrs = decode_attrs(group.attrs["satdask"])
    attrs["health"] = {k: v for k, v in attrs["health"].items() if k != "checks"}
    group.attrs["satdask"] = attrs
    table = health_table(run.path)
    assert list(table["verdict"]) == [c["verdict"] for c in run.health["checks"]]
    assert table.loc["PSI", "verdict"] == "retrain"


def test_plot_imports_and_makes_quicklooks_and_tables_without_matplotlib(
    sample_tif: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # any matplotlib import now fails
        "import satdask, satdask.plot as p\n"
        f"scene = satdask.open_scene({str(sample_tif)!r})\n"
        "assert p.quicklook(scene, max_size=64).shape == (64, 64, 4)\n"
        f"run = satdask.run_batch(scene, satdask.ThresholdModel(threshold=1.0), "
        f"{str(tmp_path / 'run.zarr')!r}, scheduler='threads')\n"
        "assert len(p.health_table(run)) == 5\n"
        "p.styled_health_table(run).to_html()\n"
        "try:\n    p.prediction_map(run)\nexcept ImportError:\n    print('needs matplotlib')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "needs matplotlib"
