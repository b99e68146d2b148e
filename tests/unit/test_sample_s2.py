"""The synthetic Sentinel-2 L1C scene and STAC item, read back from real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from satdask.errors import SatdaskError
from satdask.io.lineage import file_sha256
from satdask.io.sample_s2 import write_s2_item, write_s2_scene
from satdask.models.s2cloudless import S2_BANDS

SIZE = {"width": 300, "height": 200}
COLLAR = 7
B02, B10 = S2_BANDS.index("B02"), S2_BANDS.index("B10")


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def inside(pixels: np.ndarray, collar: int = COLLAR) -> np.ndarray:
    return pixels[:, collar:-collar, collar:-collar]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("s2")
    return {
        kind: write_s2_scene(folder / f"{kind}.tif", kind=kind, collar=COLLAR, **SIZE)
        for kind in ("clear", "cloudy", "mixed")
    }


def test_same_arguments_give_identical_bytes(tmp_path: Path, scenes: dict[str, Path]) -> None:
    again = write_s2_scene(tmp_path / "again.tif", kind="mixed", collar=COLLAR, **SIZE)
    assert again == tmp_path / "again.tif"
    assert file_sha256(again) == file_sha256(scenes["mixed"])
    other = write_s2_scene(tmp_path / "other.tif", kind="mixed", collar=COLLAR, seed=1, **SIZE)
    assert file_sha256(other) != file_sha256(again)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.tif", "other.tif"]


def test_bands_georeferencing_and_tags(scenes: dict[str, Path]) -> None:
    with rasterio.open(scenes["mixed"]) as src:
        assert (src.count, src.width, src.height) == (13, 300, 200)
        assert set(src.dtypes) == {"uint16"}
        assert src.descriptions == S2_BANDS
        assert src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
        assert src.nodata == 0
        assert src.tags()["TIFFTAG_DATETIME"] == "2026:06:01 10:30:00"
        assert src.tags()["PROCESSING_BASELINE"] == "03.01"
        assert src.scales == (1.0,) * 13 and src.offsets == (0.0,) * 13  # unset before 04.00
        assert src.compression is not None and src.compression.value == "DEFLATE"
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert src.overviews(1)
        assert src.block_shapes[0] == (256, 256)  # COG tiles of tile_size


def test_collar_is_nodata_in_every_band_and_nothing_inside_is(scenes: dict[str, Path]) -> None:
    for path in scenes.values():
        pixels = read(path)
        frame = np.ones(pixels.shape[1:], dtype=bool)
        frame[COLLAR:-COLLAR, COLLAR:-COLLAR] = False
        assert (pixels[:, frame] == 0).all()
        assert (inside(pixels) > 0).all()


def test_clear_cloudy_and_mixed_look_like_their_kind(scenes: dict[str, Path]) -> None:
    clear, cloudy, mixed = (inside(read(scenes[k])) for k in ("clear", "cloudy", "mixed"))
    assert clear[B10].max() < 40
    assert clear[B02].max() < 2500
    assert (cloudy[B02] > 3000).mean() > 0.9
    assert (cloudy[B10] > 150).mean() > 0.9
    # mixed: thick cloud, cirrus over clear sky, and clear land all present
    thick = mixed[B02] > 3000
    cirrus = (mixed[B10] >= 50) & ~thick
    clear_sky = mixed[B10] < 40
    assert 0.05 < thick.mean() < 0.6
    assert cirrus.mean() > 0.05
    assert clear_sky.mean() > 0.2
    # land: vegetation (NIR well above red) and water (NIR low) both occur under clear sky
    red, nir = clear[S2_BANDS.index("B04")], clear[S2_BANDS.index("B08")]
    assert (nir > 2 * red).mean() > 0.05
    assert (nir < 600).mean() > 0.01


def test_pixels_are_noisy_but_not_all_distinct(scenes: dict[str, Path]) -> None:
    band = inside(read(scenes["clear"]))[B02]
    values, counts = np.unique(band, return_counts=True)
    assert 100 < values.size < band.size // 4
    assert counts.max() > 1
    # neighbours differ by noise of a few tens of DN, not by hundreds
    step = np.abs(np.diff(band.astype(np.int32), axis=1))
    assert 0 < np.median(step) < 60


def test_baseline_04_adds_1000_to_every_valid_dn(tmp_path: Path, scenes: dict[str, Path]) -> None:
    new = write_s2_scene(
        tmp_path / "n0400.tif", kind="mixed", collar=COLLAR, baseline="04.00", **SIZE
    )
    old_pixels, new_pixels = read(scenes["mixed"]), read(new)
    valid = old_pixels > 0
    assert (new_pixels[valid].astype(np.int32) - old_pixels[valid] == 1000).all()
    assert (new_pixels[~valid] == 0).all()
    with rasterio.open(new) as src:
        assert src.scales == (0.0001,) * 13
        assert src.offsets == (-0.1,) * 13
        assert src.tags()["PROCESSING_BASELINE"] == "04.00"


def test_item_bands_equal_the_scene_and_carry_stac_metadata(tmp_path: Path) -> None:
    options = {"kind": "mixed", "collar": COLLAR, "baseline": "05.09", "tile_size": 128, **SIZE}
    scene = read(write_s2_scene(tmp_path / "scene.tif", **options))
    item_path = write_s2_item(tmp_path / "item", **options)
    assert item_path == tmp_path / "item" / "item.json"
    raw = json.loads(item_path.read_text())
    assert raw["stac_version"] == "1.0.0"
    item = pystac.Item.from_file(str(item_path))
    assert list(item.assets) == list(S2_BANDS)
    for index, (key, asset) in enumerate(item.assets.items()):
        assert asset.href == f"./{key}.tif"
        assert asset.roles == ["data"]
        assert asset.extra_fields["eo:bands"][0]["name"] == key
        assert asset.extra_fields["raster:bands"][0] == {
            "nodata": 0,
            "data_type": "uint16",
            "spatial_resolution": 10.0,
            "scale": 0.0001,
            "offset": -0.1,
        }
        with rasterio.open(asset.get_absolute_href()) as src:
            assert src.count == 1 and src.descriptions == (key,)
            assert src.crs.to_epsg() == 32633
            np.testing.assert_array_equal(src.read(1), scene[index])
    commons = [a.extra_fields["eo:bands"][0]["common_name"] for a in item.assets.values()]
    assert commons[:4] == ["coastal", "blue", "green", "red"]
    assert commons[10:] == ["cirrus", "swir16", "swir22"]
    assert item.properties["s2:processing_baseline"] == "05.09"
    assert raw["properties"]["proj:epsg"] == 32633  # pystac reads it back as proj:code
    assert item.properties["platform"] == "sentinel-2a"
    assert item.datetime is not None and item.datetime.isoformat() == "2026-06-01T10:30:00+00:00"
    west, south, east, north = item.bbox or []
    assert 14.9 < west < east < 15.1 and 45.0 < south < north < 45.2


def test_item_before_baseline_04_has_no_scaling_and_is_deterministic(tmp_path: Path) -> None:
    first = write_s2_item(tmp_path / "a", kind="clear", **SIZE)
    second = write_s2_item(tmp_path / "b", kind="clear", **SIZE)
    assert first.read_bytes() == second.read_bytes()
    for name in S2_BANDS:
        assert file_sha256(first.parent / f"{name}.tif") == file_sha256(
            second.parent / f"{name}.tif"
        )
    band = json.loads(first.read_text())["assets"]["B10"]["raster:bands"][0]
    assert "scale" not in band and "offset" not in band
    assert sorted(p.name for p in first.parent.iterdir()) == sorted(
        [f"{n}.tif" for n in S2_BANDS] + ["item.json"]
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"kind": "hazy"}, "kind"),
        ({"width": 0}, "width"),
        ({"height": -3}, "height"),
        ({"width": 2.5}, "width"),
        ({"tile_size": 100}, "tile_size"),
        ({"collar": 100}, "collar"),
        ({"seed": -1}, "seed"),
        ({"baseline": "4.0"}, "baseline"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(
    tmp_path: Path, options: dict[str, object], named: str
) -> None:
    kwargs = {**SIZE, **options}
    for write, target in ((write_s2_scene, tmp_path / "s.tif"), (write_s2_item, tmp_path / "i")):
        with pytest.raises(SatdaskError) as caught:
            write(target, **kwargs)
        message = str(caught.value)
        assert named in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_missing_output_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(SatdaskError, match="does not exist"):
        write_s2_scene(tmp_path / "no" / "s.tif", **SIZE)
    with pytest.raises(SatdaskError, match="does not exist"):
        write_s2_item(tmp_path / "no" / "item", **SIZE)
