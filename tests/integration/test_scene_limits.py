"""The library refuses a scene whose claimed size is over its limits, before building anything.

A GeoTIFF of a few hundred bytes can claim 200,000,000 px a side: `open_scene` used to
build float64 coordinates for every row and column of it (1.6 GB per 200 million) before
any check. `check_scene` now refuses such a claim right after the header is read, with
a one-line `SceneError`; the limits are `satdask.io.source.MAX_SCENE_SIDE` and
`MAX_SCENE_PIXELS`, or `SATDASK_MAX_SIDE` and `SATDASK_MAX_PIXELS` in the environment.

Memory is measured in a fresh process (`VmHWM`, the peak resident set, from /proc), with a
control that shows the measure sees the coordinates once the limit is raised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from satdask import open_scene
from satdask.core.grid import size_text
from satdask.errors import SceneError
from satdask.io import source
from satdask.io.source import SceneInfo, check_scene

TRANSFORM = Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 6000000.0)
GROWTH_BOUND_KB = 48 * 1024

CLAIMS = {
    "wide": (200_000_000, 1),
    "tall": (1, 200_000_000),
    "both": (200_000, 200_000),
}


def claimed(path: Path, width: int, height: int) -> Path:
    """A GeoTIFF that claims width x height px and holds none (GDAL's SPARSE_OK)."""
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
        crs="EPSG:32633", transform=TRANSFORM, nodata=0, compress="deflate", SPARSE_OK=True,
    ):  # fmt: skip
        pass
    return path


PROBE = r"""
import json, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from satdask import open_scene
import satdask.views.scene, rioxarray  # everything imported before the first measure
start = peak()
try:
    open_scene(sys.argv[1])
    result = "opened"
except Exception as exc:
    result = f"{type(exc).__name__}: {exc}"
print(json.dumps({"result": result, "growth_kb": peak() - start}))
"""


def open_in_a_fresh_process(path: Path, **env: str) -> dict[str, object]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SATDASK_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        env={**variables, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_a_claimed_size_is_refused_before_anything_is_built(tmp_path: Path, claim: str) -> None:
    width, height = CLAIMS[claim]
    path = claimed(tmp_path / f"{claim}.tif", width, height)
    assert path.stat().st_size < 2_000_000
    answer = open_in_a_fresh_process(path)
    result = str(answer["result"])
    assert result.startswith(f"SceneError: {path}: {size_text(height, width)}"), result
    assert "over the limit" in result and "\n" not in result
    assert ("SATDASK_MAX_SIDE" if claim != "both" else "SATDASK_MAX_PIXELS") in result
    assert int(answer["growth_kb"]) < GROWTH_BOUND_KB, answer  # type: ignore[call-overload]


def test_control_the_measure_sees_the_coordinates_once_the_limit_is_raised(
    tmp_path: Path,
) -> None:
    path = claimed(tmp_path / "ten-million.tif", 10_000_000, 1)
    refused = open_in_a_fresh_process(path, SATDASK_MAX_SIDE="1000000")
    assert str(refused["result"]).startswith("SceneError:")
    opened = open_in_a_fresh_process(path, SATDASK_MAX_SIDE="20000000")
    assert opened["result"] == "opened"
    # 10 million float64 x coordinates are 80 MB, and building them takes more
    assert int(opened["growth_kb"]) > 80 * 1024, opened  # type: ignore[call-overload]
    assert int(refused["growth_kb"]) < GROWTH_BOUND_KB, refused  # type: ignore[call-overload]


def test_the_limits_are_module_constants_and_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "small.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=40, height=30, count=1, dtype="uint8",
        crs="EPSG:32633", transform=TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(np.ones((1, 30, 40), dtype=np.uint8))
    assert open_scene(path).shape == (1, 30, 40)
    monkeypatch.setenv("SATDASK_MAX_PIXELS", "1000")
    with pytest.raises(SceneError) as caught:
        open_scene(path)
    assert str(caught.value) == (
        f"{path}: 30 rows x 40 cols (1200 px) is over the limit of 1000 px "
        "(SATDASK_MAX_PIXELS, satdask.io.source.MAX_SCENE_PIXELS)"
    )
    monkeypatch.delenv("SATDASK_MAX_PIXELS")
    monkeypatch.setattr(source, "MAX_SCENE_SIDE", 35)
    with pytest.raises(SceneError) as caught:
        open_scene(path)
    assert str(caught.value) == (
        f"{path}: 30 rows x 40 cols is over the limit of 35 px a side "
        "(SATDASK_MAX_SIDE, satdask.io.source.MAX_SCENE_SIDE)"
    )
    monkeypatch.setenv("SATDASK_MAX_SIDE", "zero")
    with pytest.raises(SceneError, match="SATDASK_MAX_SIDE must be a positive integer"):
        open_scene(path)


def test_check_scene_takes_the_limits_as_options() -> None:
    info = SceneInfo(
        uri="claim.tif", width=5000, height=4000, count=1, dtypes=("uint8",),
        crs=rasterio.crs.CRS.from_epsg(32633), transform=TRANSFORM, nodata=0,
        block_shape=(256, 256), acquisition_time=None,
    )  # fmt: skip
    check_scene(info)  # under the library's defaults
    with pytest.raises(SceneError, match="over the limit of 4096 px a side"):
        check_scene(info, max_side=4096)
    with pytest.raises(SceneError, match=r"\(20000000 px\) is over the limit of 1000000 px"):
        check_scene(info, max_pixels=1_000_000)


def test_validate_refuses_the_claim_in_one_line(tmp_path: Path) -> None:
    path = claimed(tmp_path / "both.tif", *CLAIMS["both"])
    out = subprocess.run(
        [sys.executable, "-m", "satdask.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "200000 rows x 200000 cols" in lines[0] and "over the limit" in lines[0]
    )
