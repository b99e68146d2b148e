"""The map page in a real browser: Debian's chromium, driven by Playwright.

A real ONNX segmentation network is imported into a registry and run by `run_batch` over
a real GeoTIFF; `satdask view` serves that run (a real uvicorn server on loopback, port
0, its URL read from what it prints). The page is opened, its tiles waited for and
screenshotted; pixels where the run's classes are uniform must show the classes' own
colours, and a click must show the `/infer` answer for the tile under it, whose class
counts must be the run's.

Chromium is installed by `make browser` (a step of `make test`), never by hand: without
it this test fails, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import zarr
from playwright.sync_api import sync_playwright
from rasterio.warp import transform
from support import stop_process

import satdask
from satdask import ModelRegistry
from satdask.io.sample import write_sample
from satdask.io.sample_model import segmentation_model, write_model

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TILE = 256


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/run.zarr: a 3-class network over scenes/view.tif (1024 px, 4 x 4 tiles)."""
    base = tmp_path_factory.mktemp("map")
    for name in ("scenes", "runs", "files"):
        (base / name).mkdir()
    scene = write_sample(base / "scenes" / "view.tif", size=1024, seed=3)
    model_bytes, meta = segmentation_model(bands=4, classes=3, layers=2, kernel=3)
    model_path, meta_path = write_model(base / "files", model_bytes, meta, name="seg")
    registry = ModelRegistry(base / "models")
    artifact = registry.import_onnx(model_path, metadata_path=meta_path)
    satdask.run_batch(scene, artifact, base / "runs" / "run.zarr", scheduler="threads")
    return base / "runs" / "run.zarr"


@pytest.fixture(scope="module")
def map_url(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`satdask view run.zarr --port 0` running; the URL it printed."""
    log = tmp_path_factory.mktemp("view-log") / "view.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SATDASK_")}
    env["SATDASK_CACHE_DIR"] = os.environ.get("SATDASK_CACHE_DIR", str(log.parent))
    cmd = [sys.executable, "-m", "satdask.cli", "view", str(run), "--port", "0"]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # printed once the socket listens
        assert "/map?run=run" in line, f"satdask view printed {line!r}:\n{log.read_text()}"
        url = line.split(" at ", 1)[1].strip()
        base = url.split("/map", 1)[0]
        deadline = time.monotonic() + 60
        while not _ready(base):  # the socket listens at once; the app loads the model first
            assert proc.poll() is None, f"satdask view exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not ready in 60 s:\n{log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/ready", timeout=30).status_code == 200
    except httpx.TransportError:
        return False


def _browser() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the map's browser test drives Debian's chromium, which "
            "`make browser` installs (a step of `make test`)"
        )
    return CHROMIUM


def _colour(hex_text: str) -> np.ndarray:
    return np.array([int(hex_text[i : i + 2], 16) for i in (1, 3, 5)])


def _uniform_points(classes: np.ndarray, *, count: int, radius: int = 8) -> list[tuple[int, int]]:
    """Pixels (row, col) whose (2 radius + 1)^2 neighbourhood is all one class, spread out."""
    rng = np.random.default_rng(0)
    picked: list[tuple[int, int]] = []
    h, w = classes.shape
    for _ in range(5000):
        r, c = (int(v) for v in rng.integers(radius, (h - radius, w - radius)))
        patch = classes[r - radius : r + radius + 1, c - radius : c + radius + 1]
        if (patch == classes[r, c]).all() and classes[r, c] != 255:
            picked.append((r, c))
        if len(picked) == count:
            break
    return picked


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a screenshot
def test_the_map_shows_the_runs_classes_and_a_clicks_infer_answer(
    run: Path, map_url: str, tmp_path: Path
) -> None:
    executable = _browser()
    pixels = zarr.open_group(str(run), mode="r")["pixels"]["prediction"]
    classes = np.asarray(pixels[...])
    colours = [_colour(c) for c in pixels.attrs["flag_colors"]]
    with rasterio.open(run.parent.parent / "scenes" / "view.tif") as src:
        scene_transform, scene_crs = src.transform, src.crs
    points = _uniform_points(classes, count=40)
    xs, ys = zip(*(scene_transform * (c + 0.5, r + 0.5) for r, c in points), strict=True)
    lons, lats = transform(scene_crs, "EPSG:4326", list(xs), list(ys))

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(executable), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.goto(map_url)
            page.wait_for_selector("body[data-tiles=loaded]", timeout=30_000)
            assert "run: prediction" in page.inner_text("#legend")
            legend = page.inner_text("#legend")
            for name in ("water", "vegetation", "built"):
                assert name in legend
            # full opacity: the class colours as drawn, not blended with the scene below
            page.locator("#opacity").fill("100")
            page.wait_for_timeout(300)
            shot = tmp_path / "map.png"
            page.screenshot(path=str(shot))
            screen = page.evaluate(
                "pts => pts.map(([lat, lon]) => {"
                " const p = window.satdaskMap.latLngToContainerPoint([lat, lon]);"
                " return [p.x, p.y]; })",
                [[la, lo] for la, lo in zip(lats, lons, strict=True)],
            )
            box = page.locator("#map").bounding_box()
            assert box is not None
            with rasterio.open(shot) as png:
                image = png.read()[:3].astype(int)
            seen = set()
            for (r, c), (sx, sy) in zip(points, screen, strict=True):
                x, y = round(box["x"] + sx), round(box["y"] + sy)
                got = image[:, y, x]
                want = colours[int(classes[r, c])]
                assert np.abs(got - want).max() <= 3, (
                    f"pixel ({r}, {c}) of class {classes[r, c]} at screen ({x}, {y}) is "
                    f"{got.tolist()}, not {want.tolist()} (screenshot: {shot})"
                )
                seen.add(int(classes[r, c]))
            assert len(seen) >= 2, f"the sample points hold classes {seen} only"

            # a click on tile (row 1, col 2): the /infer answer appears, with the run's counts
            row, col = 1, 2
            cx, cy = scene_transform * ((col + 0.5) * TILE, (row + 0.5) * TILE)
            (lon,), (lat,) = transform(scene_crs, "EPSG:4326", [cx], [cy])
            point = page.evaluate(
                "([lat, lon]) => { const p = window.satdaskMap.latLngToContainerPoint([lat, lon]);"
                " return [p.x, p.y]; }",
                [lat, lon],
            )
            page.locator("#map").click(position={"x": point[0], "y": point[1]})
            page.wait_for_selector("#answer-body[data-row]", timeout=30_000)
            answer = page.locator("#answer-body")
            assert answer.get_attribute("data-row") == str(row)
            assert answer.get_attribute("data-col") == str(col)
            assert answer.get_attribute("data-status") == "200"
            text = answer.inner_text()
            tile = classes[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE]
            for value, name in enumerate(("water", "vegetation", "built")):
                assert f'"{name}": {int((tile == value).sum())}' in text, text
            page.screenshot(path=str(tmp_path / "map-clicked.png"))
        finally:
            browser.close()
    if os.environ.get("SATDASK_MAP_SCREENSHOT"):  # to look at it: a copy where asked
        shutil.copy(tmp_path / "map-clicked.png", os.environ["SATDASK_MAP_SCREENSHOT"])
    assert not problems, f"the page logged: {problems}"
