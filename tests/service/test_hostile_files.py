"""Hostile files under the data root (issue 14, items 1, 2, 3 and 6), against a real server.

Someone who can write into the data root must not make the service serve a file outside
it, nor make it allocate or decompress without bound:

- a name swapped between a regular file and a symlink to a canary outside the root
  (`renameat2(RENAME_EXCHANGE)` in a loop, by another process) while the client asks for
  it: the canary's values are never served, and an inotify watch on the canary shows that
  no process opened it, on a first open and on a reader thread's first read of a scene
  already cached;
- symlinks inside the root reach what the same name could reach by itself, and nothing
  else (a link to a hidden file is 404, as the hidden file is);
- a hard link inside the root to a file outside it is refused (unless allowed);
- a TIFF header claiming 200,000,000 px a side (or 200,000 x 200,000) is refused in
  bounded memory (`VmHWM` of the server process), and the server stays alive;
- a DEFLATE strip that inflates to 1 GiB is refused before any read, while other
  clients' tiles are answered.

Each has a control step that shows it can fail: the watch sees a direct open of the
canary, the swaps really changed the answers, the hard link serves once allowed, the
bomb strip is a real one that the service reads once its limit is raised.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hostile import OpenWatch, Swapper, peak_rss_kb, tiff_bomb
from litestar import Litestar
from litestar.testing import TestClient
from svc_support import LiveServer, running_server, write_tif

from satdask.core.grid import size_text

Client = TestClient[Litestar]

TILE = 32  # the servers here use 32 px tiles, so each small scene is one tile
INSIDE, CANARY = 7, 200  # the pixel values of the files inside the root and of the canary
PAIRS = {"first": 200, "cached": 40}  # names raced per phase
ROUNDS = {"first": 1, "cached": 20}  # times each is asked for


@dataclass(frozen=True)
class Hostile:
    root: Path
    outside: Path
    canary: Path  # outside / "canary.tif": 64 x 64 px of CANARY


def scene(path: Path, value: int, size: int = TILE) -> Path:
    return write_tif(path, np.full((1, size, size), value, dtype=np.uint8))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    canary = scene(outside / "canary.tif", CANARY, size=64)
    scene(root / "good.tif", INSIDE)
    for phase, count in PAIRS.items():
        (root / phase).mkdir()
        for i in range(count):
            scene(root / phase / f"a{i}.tif", INSIDE)
            (root / phase / f"l{i}.tif").symlink_to(canary)
    return Hostile(root=root, outside=outside, canary=canary)


@pytest.fixture(scope="module")
def server(
    hostile: Hostile, sample_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("hostile-server") / "server.log"
    env = {"SATDASK_TILE_SIZE": str(TILE), "SATDASK_SCENE_CACHE": "1000"}
    with running_server(hostile.root, sample_registry, log, env=env) as live:
        yield live


def pairs(hostile: Hostile, phase: str, count: int) -> list[tuple[Path, Path]]:
    folder = hostile.root / phase
    return [(folder / f"a{i}.tif", folder / f"l{i}.tif") for i in range(count)]


def tile(name: str, row: int = 0, col: int = 0) -> dict[str, Any]:
    return {"scene": name, "row": row, "col": col}


def outcome(r: httpx.Response | Any) -> str:
    """'inside', 'canary', or the status of a refusal; anything else fails the test."""
    if r.status_code == 404:
        return "404"
    assert r.status_code == 200, r.text
    body = r.json()
    value = body["mean_intensity"] if "mean_intensity" in body else body["width"]
    if value in (INSIDE, TILE):
        return "inside"
    assert value in (CANARY, 64), body
    return "canary"


def race(
    ask: Callable[[str], list[Any]],
    hostile: Hostile,
    phase: str,
    *,
    before: Callable[[], None],
    count: int | None = None,
    rounds: int | None = None,
) -> Counter[str]:
    """Outcomes of asking for the first `count` names of `phase`, `rounds` times over,
    while their pairs are swapped (all of them, as many times as ROUNDS says, by default)."""
    count = count or PAIRS[phase]
    rounds = rounds or ROUNDS[phase]
    watch = OpenWatch(hostile.canary)
    try:
        # control: the watch sees an open of the canary, whoever makes it
        with open(hostile.canary, "rb") as f:
            f.read(1)
        assert watch.events() >= 1
        before()
        with Swapper(pairs(hostile, phase, count)) as swapper:
            seen = Counter(
                outcome(r)
                for _ in range(rounds)
                for i in range(count)
                for r in ask(f"{phase}/a{i}.tif")
            )
        opened = watch.events()
    finally:
        watch.close()
    assert swapper.swaps > sum(seen.values())  # the names were swapped all along
    assert seen["canary"] == 0, seen
    assert opened == 0  # no process opened or read the canary, by any name
    # control: the swaps changed what the service found, so the race was run
    assert seen["inside"] and seen["404"], seen
    return seen


# ---------------------------------------------------------------------------
# 1. The race
# ---------------------------------------------------------------------------


def test_a_name_swapped_with_a_symlink_out_never_serves_the_outside_file(
    server: LiveServer, hostile: Hostile
) -> None:
    """Each name asked for the first time, while another process swaps it."""
    with server.client() as http:
        race(
            lambda name: [
                http.post("/infer", json=tile(name)),
                http.get("/scenes/info", params={"path": name}),
            ],
            hostile,
            "first",
            before=lambda: None,
        )
        assert http.get("/health").status_code == 200


def test_a_reader_threads_open_of_a_cached_scene_is_the_checked_file(
    server: LiveServer, hostile: Hostile
) -> None:
    """Scenes opened (metadata only) while nothing swaps; then their pixel reads, racing.

    Each read is a reader thread's open of the scene: its first, and again after its
    handle was evicted (40 scenes over 2 threads that keep 16 handles each).
    """
    with server.client() as http:

        def cache_them() -> None:
            for i in range(PAIRS["cached"]):
                r = http.get("/scenes/info", params={"path": f"cached/a{i}.tif"})
                assert outcome(r) == "inside"

        race(
            lambda name: [http.post("/infer", json=tile(name))],
            hostile,
            "cached",
            before=cache_them,
        )


def test_the_walk_holds_the_race_too(
    make_client: Callable[..., Client], hostile: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel has no openat2, the walk opens each name with O_NOFOLLOW.

    Every request walks the name again (a cached scene is used only if the name still
    leads to the same file), so 4 names swapped fast, asked 250 times each, put a swap
    between the walk's look at a name and its open many times over.
    """
    import service.files

    monkeypatch.setattr(service.files, "OPENAT2", False)
    walks = []
    real_walk = service.files._walk

    def walk(*args: Any, **kwargs: Any) -> Any:
        walks.append(args[2][:])
        return real_walk(*args, **kwargs)

    monkeypatch.setattr(service.files, "_walk", walk)
    client = make_client(data_root=hostile.root, tile_size=TILE, scene_cache=1000)
    race(
        lambda name: [client.post("/infer", json=tile(name))],
        hostile,
        "first",
        before=lambda: None,
        count=4,
        rounds=250,
    )
    assert len(walks) >= 1000  # every request went through the walk


# ---------------------------------------------------------------------------
# Symlinks and hard links
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linked(hostile: Hostile) -> Path:
    """A root of links: each name's expected answer is in LINKS."""
    root = hostile.root.parent / "links"
    (root / "sub").mkdir(parents=True)
    (root / ".hdir").mkdir()
    scene(root / "real.tif", INSIDE)
    scene(root / ".hidden.tif", INSIDE)
    scene(root / ".hdir" / "inner.tif", INSIDE)
    scene(root / "sub" / "deep.tif", INSIDE)
    (root / "notes.txt").write_bytes((root / "real.tif").read_bytes())
    links = {
        "to-real.tif": "real.tif",
        "abs-real.tif": str(root / "real.tif"),
        "sub/up.tif": "../real.tif",
        "dirlink": "sub",
        "chain.tif": "to-real.tif",
        "to-hidden.tif": ".hidden.tif",
        "abs-hidden.tif": str(root / ".hidden.tif"),
        "to-hidden-dir.tif": ".hdir/inner.tif",
        "out.tif": str(hostile.canary),
        "out-rel.tif": "../outside/canary.tif",
        "sub/out-up.tif": "../../outside/canary.tif",
        "via-root.tif": f"{root}/../outside/canary.tif",
        "chain-out.tif": "out.tif",
        "not-raster.tif": "notes.txt",
        "loop.tif": "loop.tif",
        "outdir": str(hostile.outside),
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    return root


LINKS = {
    "real.tif": 200,
    "to-real.tif": 200,
    "abs-real.tif": 200,  # an absolute target under the root
    "sub/up.tif": 200,  # `..` that stays inside
    "dirlink/deep.tif": 200,
    "chain.tif": 200,
    ".hidden.tif": 404,
    "to-hidden.tif": 404,  # as the hidden file itself
    "abs-hidden.tif": 404,
    "to-hidden-dir.tif": 404,
    "out.tif": 404,
    "out-rel.tif": 404,
    "sub/out-up.tif": 404,
    "via-root.tif": 404,
    "chain-out.tif": 404,
    "not-raster.tif": 404,  # the target must be a raster name too
    "loop.tif": 404,
    "outdir/canary.tif": 404,
}


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Paths resolved by the kernel where it can (openat2), or by the walk everywhere."""
    import service.files

    if request.param == "walk":
        monkeypatch.setattr(service.files, "OPENAT2", False)
    elif not service.files._kernel_resolves():
        pytest.skip("this kernel (or its seccomp filter) has no openat2")
    return str(request.param)


def test_symlinks_reach_only_what_their_target_name_could(
    make_client: Callable[..., Client], linked: Path, resolver: str
) -> None:
    client = make_client(data_root=linked, tile_size=TILE)
    for name, status in LINKS.items():
        for r in (
            client.post("/infer", json=tile(name)),
            client.get("/scenes/info", params={"path": name}),
        ):
            assert r.status_code == status, (name, r.text)


def test_a_hard_link_to_a_file_outside_is_refused_unless_allowed(
    make_client: Callable[..., Client], hostile: Hostile, resolver: str
) -> None:
    root = hostile.root.parent / f"hard-{resolver}"
    root.mkdir()
    secret = scene(hostile.outside / f"secret-{resolver}.tif", CANARY)
    os.link(secret, root / "hard.tif")
    scene(root / "plain.tif", INSIDE)
    client = make_client(data_root=root, tile_size=TILE)
    for r in (
        client.post("/infer", json=tile("hard.tif")),
        client.post("/infer", json={"tile_path": "hard.tif"}),
        client.get("/scenes/info", params={"path": "hard.tif"}),
    ):
        assert r.status_code == 404, r.text
    assert "hard.tif" not in client.get("/scenes").json()["scenes"]
    assert client.post("/infer", json=tile("plain.tif")).status_code == 200
    # control: the link is a readable scene, which the setting lets through
    allowed = make_client(data_root=root, tile_size=TILE, allow_hard_links=True)
    r = allowed.post("/infer", json=tile("hard.tif"))
    assert r.status_code == 200 and r.json()["mean_intensity"] == CANARY


# ---------------------------------------------------------------------------
# 2. Claimed sizes, 3. decompression bombs
# ---------------------------------------------------------------------------

HEADER_BOMBS = {
    "bomb-wide.tif": (200_000_000, 1),
    "bomb-tall.tif": (1, 200_000_000),
    "bomb-both.tif": (200_000, 200_000),
}
GROWTH_BOUND_KB = 48 * 1024


@pytest.fixture(scope="module")
def bombs(hostile: Hostile) -> Path:
    folder = hostile.root / "bombs"
    folder.mkdir()
    for name, (width, height) in HEADER_BOMBS.items():
        tiff_bomb(folder / name, width=width, height=height)
    # one DEFLATE strip of 32768 x 32768 px of 9: 1 MB on disk, 1 GiB inflated
    tiff_bomb(folder / "strip.tif", width=32768, height=32768, value=9)
    return folder


def test_header_bombs_are_refused_in_bounded_memory(
    server: LiveServer, hostile: Hostile, bombs: Path
) -> None:
    with server.client() as http:
        assert outcome(http.post("/infer", json=tile("good.tif"))) == "inside"
        start = peak_rss_kb(server.process.pid)
        for name, (width, height) in HEADER_BOMBS.items():
            path = f"bombs/{name}"
            for r in (
                http.get("/scenes/info", params={"path": path}),
                http.post("/infer", json=tile(path)),
                http.post("/infer", json={"tile_path": path}),
            ):
                assert r.status_code == 422, r.text
                detail = r.json()["detail"]
                assert detail.startswith(f"{path}: {size_text(height, width)}"), detail
                assert "over the limit" in detail
        peak = peak_rss_kb(server.process.pid)
        assert http.get("/health").status_code == 200
        assert outcome(http.post("/infer", json=tile("good.tif"))) == "inside"
    assert server.process.poll() is None
    assert peak - start < GROWTH_BOUND_KB, (start, peak)


def test_a_deflate_strip_bomb_is_refused_while_others_are_answered(
    server: LiveServer, hostile: Hostile, bombs: Path
) -> None:
    bottom = 32768 // TILE - 1
    with server.client() as http:
        start = peak_rss_kb(server.process.pid)
        with ThreadPoolExecutor(8) as pool:
            bomb = [
                pool.submit(http.post, "/infer", json=tile("bombs/strip.tif", bottom, col))
                for col in range(4)
            ]
            good = [pool.submit(http.post, "/infer", json=tile("good.tif")) for _ in range(16)]
            answers = [f.result() for f in bomb]
            assert [outcome(f.result()) for f in good] == ["inside"] * 16
        for r in answers:
            assert r.status_code == 422, r.text
            detail = r.json()["detail"]
            assert detail.startswith("bombs/strip.tif: "), detail
            assert "1 strip of 32768 rows x 32768 cols" in detail and "over the limit" in detail
        assert peak_rss_kb(server.process.pid) - start < GROWTH_BOUND_KB
        assert http.get("/health").status_code == 200


def test_the_strip_bomb_is_a_real_one(
    make_client: Callable[..., Client], hostile: Hostile, bombs: Path
) -> None:
    """Control: with the limits raised the same file is read, its bottom tile 9 in value."""
    gib = 1 << 30
    client = make_client(
        data_root=hostile.root, tile_size=TILE, max_block_bytes=2 * gib, max_read_bytes=2 * gib
    )
    r = client.post("/infer", json=tile("bombs/strip.tif", 32768 // TILE - 1, 0))
    assert r.status_code == 200, r.text
    assert r.json()["mean_intensity"] == 9


def test_a_layout_that_reads_too_much_per_tile_is_refused(
    make_client: Callable[..., Client], hostile: Hostile
) -> None:
    """1-row strips of 20,000 px: each 32 px tile inflates 32 strips, 640,000 bytes."""
    root = hostile.root.parent / "strips"
    root.mkdir()
    tiff_bomb(root / "rows.tif", width=20_000, height=64, value=5, rows_per_strip=1)
    assert (
        make_client(data_root=root, tile_size=TILE)
        .post("/infer", json=tile("rows.tif"))
        .json()["mean_intensity"]
        == 5
    )
    client = make_client(data_root=root, tile_size=TILE, max_read_bytes=500_000)
    r = client.post("/infer", json=tile("rows.tif"))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("rows.tif: a 32 px tile reads 32 strips of 1 row x ")
    # the tile_path form reads the whole raster: 64 strips, 1,280,000 bytes
    client = make_client(data_root=root, tile_size=TILE, max_read_bytes=1_000_000)
    assert client.post("/infer", json=tile("rows.tif")).status_code == 200
    r = client.post("/infer", json={"tile_path": "rows.tif"})
    assert r.status_code == 422, r.text
    assert "reads 64 strips" in r.json()["detail"]


def test_scene_size_limits_are_settings(
    make_client: Callable[..., Client], hostile: Hostile
) -> None:
    client = make_client(data_root=hostile.root, tile_size=TILE, max_scene_side=16)
    r = client.get("/scenes/info", params={"path": "good.tif"})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "good.tif: 32 rows x 32 cols is over the limit of 16 px a side (SATDASK_MAX_SCENE_SIDE)"
    )
    client = make_client(data_root=hostile.root, tile_size=TILE, max_scene_pixels=1000)
    r = client.get("/scenes/info", params={"path": "good.tif"})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "good.tif: 32 rows x 32 cols (1024 px) is over the limit of 1000 px "
        "(SATDASK_MAX_SCENE_PIXELS)"
    )
