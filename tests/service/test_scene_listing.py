"""`GET /scenes` on a large tree (issue 14, item 7): bounded, cached, off the reader threads.

The tree is real: TREE_DIRS folders of TREE_FILES files each (120,000 entries, as in the
issue), plus a real scene at the top. Nothing asserts on wall-clock time: a walk is shown
to be in flight by the server's own gauge, and tiles are shown to be answered while that
gauge still reads 1, i.e. before the walk ended.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from svc_support import DataRoot, LiveServer, running_server

Client = TestClient[Litestar]
TREE_DIRS, TREE_FILES = 600, 200


@pytest.fixture(scope="module")
def tree(data: DataRoot, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root of TREE_DIRS x TREE_FILES (empty) rasters under many/, a real scene at
    the top, one folder nested deeper, and a hidden folder that must not be listed."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(data.root / "sample.tif", root / "sample.tif")
    for d in range(TREE_DIRS):
        folder = root / "many" / f"d{d:04d}"
        folder.mkdir(parents=True)
        for f in range(TREE_FILES):
            (folder / f"f{f:04d}.tif").touch()
    deep = root / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "deep.tif").touch()
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.tif").touch()
    return root


ALL = TREE_DIRS * TREE_FILES + 2  # the scene, the deep one, and many/


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_the_walk_stops_at_each_bound(make_client: Callable[..., Client], tree: Path) -> None:
    whole = {"list_max_scenes": ALL, "list_max_entries": 2 * ALL, "list_seconds": 600}
    complete = make_client(data_root=tree, **whole).get("/scenes").json()
    assert complete["truncated"] is False and complete["reason"] is None  # control
    assert len(complete["scenes"]) == ALL
    assert "a/b/c/d/deep.tif" in complete["scenes"]
    assert not any(".hidden" in s for s in complete["scenes"])

    cut = {}
    for bounds, reason in (
        ({"list_max_scenes": ALL - 1}, "scenes"),
        ({"list_max_entries": 1000}, "entries"),
        ({"list_max_depth": 3}, "depth"),
        ({"list_seconds": 0.001}, "time"),
    ):
        answer = make_client(data_root=tree, **{**whole, **bounds}).get("/scenes")
        assert answer.status_code == 200, answer.text
        cut[reason] = body = answer.json()
        assert body["truncated"] is True and body["reason"] == reason, (bounds, body["reason"])
        assert set(body["scenes"]) < set(complete["scenes"]), bounds
    assert len(cut["scenes"]["scenes"]) == ALL - 1
    assert len(cut["entries"]["scenes"]) < 1000
    assert len(cut["depth"]["scenes"]) == ALL - 1  # all but a/b/c/d/deep.tif
    assert "a/b/c/d/deep.tif" not in cut["depth"]["scenes"]


def test_a_listing_is_reused_until_it_is_stale(
    make_client: Callable[..., Client], tree: Path
) -> None:
    client = make_client(data_root=tree, list_max_depth=1, list_cache_seconds=3600)
    first = client.get("/scenes").json()
    (tree / "late.tif").touch()
    try:
        assert client.get("/scenes").json() == first  # cached: the new file is not seen
        metrics = client.get("/metrics").text
        assert metric(metrics, "satdask_scene_listings_total", 'source="walk"') == 1
        assert metric(metrics, "satdask_scene_listings_total", 'source="cache"') == 1
        fresh = make_client(data_root=tree, list_max_depth=1, list_cache_seconds=0.001)
        assert "late.tif" in fresh.get("/scenes").json()["scenes"]  # control: a new walk sees it
    finally:
        (tree / "late.tif").unlink()


@pytest.fixture(scope="module")
def tree_server(
    tree: Path, sample_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """`satdask serve` on the tree with ONE reader thread, and bounds that let a walk of
    the whole tree finish: a listing on the reader thread would hold every tile up."""
    log = tmp_path_factory.mktemp("tree-server") / "server.log"
    env = {
        "SATDASK_THREADS": "1",
        "SATDASK_LIST_SECONDS": "600",
        "SATDASK_LIST_MAX_ENTRIES": str(10 * ALL),
        "SATDASK_LIST_MAX_SCENES": str(ALL),
        "SATDASK_LIST_CACHE_SECONDS": "3600",
    }
    with running_server(tree, sample_registry, log, env=env) as server:
        yield server


def test_tiles_are_answered_while_listings_run(tree_server: LiveServer) -> None:
    listings: list[httpx.Response] = []

    def list_scenes() -> None:
        with tree_server.client() as http:
            listings.append(http.get("/scenes", timeout=600))

    with tree_server.client() as http:
        threads = [threading.Thread(target=list_scenes) for _ in range(6)]
        threads[0].start()
        for _ in range(500):  # bounded: until the walk is seen running
            if metric(http.get("/metrics").text, "satdask_scene_listing_in_flight") == 1:
                break
        else:
            pytest.fail("no walk of the tree was seen in flight")
        for t in threads[1:]:
            t.start()
        for row in range(4):
            tile = http.post("/infer", json={"scene": "sample.tif", "row": row, "col": 1})
            assert tile.status_code == 200, tile.text
        # the tiles are answered, and the walk they were sent during is still running
        metrics = http.get("/metrics").text
        assert metric(metrics, "satdask_scene_listing_in_flight") == 1
        for t in threads:
            t.join(timeout=600)
        after = http.get("/metrics").text
    assert len(listings) == 6 and all(r.status_code == 200 for r in listings)
    assert all(r.json() == listings[0].json() for r in listings)
    assert len(listings[0].json()["scenes"]) == ALL
    assert metric(after, "satdask_scene_listings_total", 'source="walk"') == 1  # one walk
    assert metric(after, "satdask_scene_listing_in_flight") == 0
