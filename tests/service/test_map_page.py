"""GET /map, its static files and /map/locate, in process; and `satdask view`'s refusals.

The browser test (tests/browser/test_map.py) drives the page itself; these hold what the
server answers: the page and Leaflet from the installed XStatic-Leaflet with a CSP and
ETags, nothing else under /map/static, the page without Leaflet saying what to install,
the tile under a point for any CRS, and the API key.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from litestar.testing import TestClient
from rasterio.warp import transform
from svc_support import write_tif

from service import Settings, create_app
from service.mapview import CSP, INSTALL, leaflet_dir, missing_page
from service.view import map_url, plan_view


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """utm.tif: 600 x 520 px of 10 m in UTM 33N, 256 px tiles (2 x 2 whole ones)."""
    root = tmp_path_factory.mktemp("map-root")
    data = np.random.default_rng(0).integers(1, 255, (1, 520, 600), dtype=np.uint8)
    write_tif(root / "utm.tif", data)
    return root


def test_the_page_and_leaflet_are_served_with_a_csp_and_etags(root: Path) -> None:
    assert leaflet_dir() is not None, "XStatic-Leaflet is part of the service extra"
    with TestClient(create_app(Settings(data_root=root, api_key="k"))) as client:
        page = client.get("/map")  # no key: a browser cannot send one when it navigates
        assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
        for src in ("/map/static/leaflet/leaflet.js", "/map/static/map.js"):
            assert f'src="{src}"' in page.text
            answer = client.get(src)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/javascript")
            again = client.get(src, headers={"If-None-Match": answer.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
        leaflet = (leaflet_dir() or Path()) / "leaflet.js"
        assert client.get("/map/static/leaflet/leaflet.js").content == leaflet.read_bytes()
        icon = client.get("/map/static/leaflet/images/marker-icon.png")
        assert icon.status_code == 200 and icon.content.startswith(b"\x89PNG")
        # the locator opens scenes: it wants the key like every data route
        assert client.get("/map/locate?scene=utm.tif&lon=15&lat=45").status_code == 401


@pytest.mark.parametrize(
    "name",
    [
        "index.html",
        "../app.py",
        "leaflet/../../settings.py",
        "leaflet/leaflet-src.js",
        "leaflet/%2e%2e/leaflet.js",
        "nothing.js",
    ],
)
def test_nothing_but_the_pages_files_is_served_under_static(root: Path, name: str) -> None:
    with TestClient(create_app(Settings(data_root=root))) as client:
        answer = client.get(f"/map/static/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["status_code"] == 404


def test_without_leaflet_the_page_says_what_to_install() -> None:
    text = missing_page()
    assert "pip install &#x27;satdask[service]&#x27;" in text
    assert INSTALL == "pip install 'satdask[service]'"


def test_locate_finds_the_tile_under_a_point_in_the_scenes_crs(root: Path) -> None:
    with rasterio.open(root / "utm.tif") as src:
        tf, crs = src.transform, src.crs
    cases = [((0, 0), (10, 10)), ((1, 1), (300, 270)), ((0, 1), (500, 5))]
    with TestClient(create_app(Settings(data_root=root))) as client:
        for (row, col), (px, py) in cases:
            x, y = tf * (px + 0.5, py + 0.5)
            (lon,), (lat,) = transform(crs, "EPSG:4326", [x], [y])
            found = client.get("/map/locate", params={"scene": "utm.tif", "lon": lon, "lat": lat})
            assert found.status_code == 200
            body = found.json()
            assert (body["row"], body["col"]) == (row, col), (px, py)
            corner = body["corners"][0]  # upper-left, as [lat, lon]
            cx, cy = tf * (col * 256, row * 256)
            (clon,), (clat,) = transform(crs, "EPSG:4326", [cx], [cy])
            assert corner == pytest.approx([clat, clon], abs=1e-9)
        # the partial tiles at the edge (skip) and points off the scene have no tile
        x, y = tf * (590, 510)
        (lon,), (lat,) = transform(crs, "EPSG:4326", [x], [y])
        off = client.get("/map/locate", params={"scene": "utm.tif", "lon": lon, "lat": lat})
        assert off.json() == {"scene": "utm.tif", "row": None, "col": None, "corners": None}
        far = client.get("/map/locate", params={"scene": "utm.tif", "lon": -120, "lat": 10})
        assert far.json()["row"] is None
        assert client.get("/map/locate?scene=../x.tif&lon=1&lat=1").status_code == 404
        assert client.get("/map/locate?scene=utm.tif&lon=200&lat=1").status_code == 400


def test_view_plans_the_roots_and_names_of_a_run(tmp_path: Path, sample_tif: Path) -> None:
    import satdask

    scenes, runs = tmp_path / "scenes", tmp_path / "runs"
    scenes.mkdir()
    runs.mkdir()
    scene = scenes / "view.tif"
    scene.write_bytes(sample_tif.read_bytes())
    model = satdask.train([scene], scheduler="threads", tile_size=128)
    satdask.run_batch(scene, model, runs / "my run.zarr", scheduler="threads", tile_size=128)
    plan = plan_view(runs / "my run.zarr")
    assert plan.runs_root == runs.resolve() and plan.run == "my run"
    assert Path(plan.data_root) == scenes.resolve() or Path(plan.data_root) == scenes
    assert plan.scene == "view.tif" and plan.model is None  # an unregistered model
    assert (plan.tile_size, plan.edge) == (128, "skip")
    assert map_url("127.0.0.1", 8123, plan.run) == "http://127.0.0.1:8123/map?run=my%20run"
    assert map_url("::1", 8123, "a/b") == "http://[::1]:8123/map?run=a%2Fb"


@pytest.mark.parametrize("kind", ["missing", "not-a-run"])
def test_satdask_view_refuses_a_bad_store_in_one_line(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "run.zarr"
    if kind == "not-a-run":
        store.mkdir()
        (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    done = subprocess.run(
        [sys.executable, "-m", "satdask.cli", "view", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("satdask: error: "), done.stderr
    assert str(store) in lines[0]
    assert done.stdout == ""  # no URL printed
