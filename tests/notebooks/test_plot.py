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
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from support import corrupt_block

from satdask import ModelRegistry, ThresholdModel, open_scene, run_batch, scene_grid
from satdask.core.features import STATUS_FAILED, STATUS_NODATA
from satdask.plot import health_table, prediction_map, quicklook
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
    with pytest.raises(ValueError, match="rgb must name"):
        quicklook(open_scene(path), rgb=(1, 4, 2))


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


def test_health_table_of_a_healthy_run(sample_tif: Path, sample_registry: Path, tmp_path) -> None:
    artifact = ModelRegistry(sample_registry).load()
    run = run_batch(sample_tif, artifact, tmp_path / "run.zarr", scheduler="threads")
    table = health_table(run).data
    assert list(table.columns) == ["value", "limit", "check"]
    assert table.loc[("tiles", "total"), "value"] == run.counts["tiles_total"] == 16
    assert table.loc[("health", "status"), "value"] == "healthy"
    assert table.loc[("health", "retrain (drift detected)"), "value"] == "no"
    assert set(table["check"]) <= {"", "ok"}
    assert table.loc[("drift", "PSI"), "limit"] == "<= 0.2"


def test_health_table_flags_drift_exactly_where_the_report_does(
    sample_tif: Path, tmp_path: Path
) -> None:
    dim = ThresholdModel.fit(np.linspace(100.0, 300.0, 50))  # trained on far darker tiles
    run = run_batch(sample_tif, dim, tmp_path / "run.zarr", scheduler="threads")
    table = health_table(run).data
    assert run.health["drift_detected"]
    assert table.loc[("drift", "PSI"), "check"] == "drift"
    assert table.loc[("drift", "mean shift"), "check"] == "drift"
    assert table.loc[("health", "retrain (drift detected)"), "value"] == "yes"
    shown = [v for (section, _), v in table["value"].items() if section == "health"]
    for text in run.health["recommendations"]:
        assert text in shown


def test_health_table_renders_long_texts_in_full_and_highlights_drift(
    sample_tif: Path, tmp_path: Path
) -> None:
    dim = ThresholdModel.fit(np.linspace(100.0, 300.0, 50))
    run = run_batch(sample_tif, dim, tmp_path / "run.zarr", scheduler="threads")
    html = health_table(run).to_html()
    for text in run.health["recommendations"]:
        assert len(text) > 50 and text in html  # in full: no "..." truncation
    assert "background-color: #bc4c00" in html and run.run_id in html


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
        "p.health_table(run).to_html()\n"
        "try:\n    p.prediction_map(run)\nexcept ImportError:\n    print('needs matplotlib')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "needs matplotlib"
