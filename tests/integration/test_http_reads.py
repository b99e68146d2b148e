"""Remote COGs are read by range: one tile or one band costs that much, not the file.

The loopback server counts every byte it sends (`RangeHandler.bytes_sent`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import RangeHandler, assert_same_arrays

from satdask import ThresholdModel, open_scene, read_tile, run_batch, scene_grid
from satdask.io.sample import write_sample


def sent_during(action) -> int:  # type: ignore[no-untyped-def]
    before = RangeHandler.bytes_sent
    action()
    return RangeHandler.bytes_sent - before


def test_one_tile_of_a_remote_cog_reads_a_small_fraction_of_it(http_root, tmp_path: Path) -> None:
    base, root = http_root
    path = write_sample(root / "scene.tif", size=2048, bands=4)
    size = path.stat().st_size
    url = f"{base}/scene.tif"

    opened: dict[str, object] = {}
    header = sent_during(lambda: opened.update(scene=open_scene(url)))
    remote = opened["scene"]
    grid = scene_grid(remote)
    tile: dict[str, np.ndarray] = {}
    sent = sent_during(lambda: tile.update(px=read_tile(remote, 3, 5, grid=grid)))

    np.testing.assert_array_equal(tile["px"], read_tile(open_scene(path), 3, 5, grid=grid))
    print(f"{size} byte COG: open {header} bytes, one tile {sent} bytes ({100 * sent / size:.2f}%)")
    assert sent < 0.05 * size


def test_a_band_subset_of_a_remote_scene_reads_about_that_band(
    http_root, geotiff, tmp_path: Path
) -> None:
    base, root = http_root
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, size=(4, 1024, 1024), dtype=np.uint16)
    local = geotiff(data, "bands.tif", interleave="band")
    (root / "bands.tif").write_bytes(local.read_bytes())
    size = local.stat().st_size
    model = ThresholdModel(threshold=2000.0)

    runs: dict[str, Path] = {}
    sent = sent_during(
        lambda: runs.update(
            remote=run_batch(
                open_scene(f"{base}/bands.tif", bands=[2]),
                model,
                tmp_path / "remote.zarr",
                scheduler="threads",
            ).path
        )
    )
    runs["local"] = run_batch(
        open_scene(local, bands=[2]), model, tmp_path / "local.zarr", scheduler="threads"
    ).path

    print(f"band 2 of 4 from a {size} byte GeoTIFF: {sent} bytes sent ({100 * sent / size:.1f}%)")
    assert sent < 0.35 * size
    assert_same_arrays(runs["remote"], runs["local"])


@pytest.mark.parametrize("bands", [None, [1]])
def test_the_band_subset_changes_the_features(http_root, geotiff, bands) -> None:  # type: ignore[no-untyped-def]
    """Guards the test above: a subset that read all bands would not change the means."""
    base, root = http_root
    data = np.stack([np.full((256, 256), v, dtype=np.uint16) for v in (10, 20, 30, 40)])
    (root / "b.tif").write_bytes(geotiff(data, "b.tif", interleave="band").read_bytes())
    scene = open_scene(f"{base}/b.tif", bands=bands)
    px = read_tile(scene, 0, 0, grid=scene_grid(scene))
    assert px.shape[0] == (1 if bands else 4) and px.mean() == (10 if bands else 25)
