"""A remote data root: `satdask serve --data-root http://127.0.0.1:PORT/data/`.

The scenes live on a loopback HTTP server with Range support (tests/conftest.py's
`RangeHandler`, here also recording every request it gets), under the prefix `/data/`;
beside the prefix, `/outside/secret.tif` is a valid GeoTIFF no request may reach. The
prefix folder is also used as a local data root, so every remote answer is compared with
the local one for the same file.

Bounds (the scene is `write_sample(size=2048, bands=4)`, a 23.6 MB COG of 256 px blocks):
the open (GET /scenes/info) costs under 1% of the file, and one 256 px tile after it
under 5%. Measured: about 64 KB for the open and 190-345 KB for one tile.

The remote server has no symlinks, VRTs or hidden files of the local corpus fixture: a
remote root is only what its server answers, so the corpus's names that pass the path
rules are simply missing there, and must answer exactly like a missing local file.
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from support import RangeHandler, serving
from svc_support import (
    JSON,
    NOT_FOUND,
    DataRoot,
    LiveServer,
    free_port,
    json_body,
    query_targets,
    running_server,
    write_tif,
)
from traversal import JSON_ROUTES, corpus, send_refused

from satdask.io.sample import write_sample
from service import Settings, create_app
from service.errors import ConfigError, NotFoundError
from service.remote import RemoteRoot

PREFIX = "/data/"
SCENE = "scene.tif"
TILE = {"scene": SCENE, "row": 3, "col": 5}


@dataclass
class Remote:
    """The loopback server: its base URL, the served folder and what it has been asked."""

    base: str
    www: Path
    data: DataRoot  # root = the prefix folder, outside = its sibling with secret.tif
    handler: Any  # the recording handler class: bytes_sent and requests

    @property
    def root_url(self) -> str:
        return self.base + PREFIX

    @property
    def scene_bytes(self) -> int:
        return (self.data.root / SCENE).stat().st_size

    def sent(self) -> int:
        return int(self.handler.bytes_sent)

    def requests(self) -> list[str]:
        with self.handler.lock:
            return list(self.handler.requests)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    class Recording(RangeHandler):
        """Records every request target as received; answers 403 for `forbidden.tif`
        (what S3 says for a missing key when listing is not allowed) and 414 for a name
        too long for the file system."""

        bytes_sent = 0
        requests: ClassVar[list[str]] = []
        lock = threading.Lock()
        failing: ClassVar[dict[str, int]] = {}  # request target -> status, set by tests

        def send_head(self):  # type: ignore[no-untyped-def]
            with self.lock:
                self.requests.append(self.path)
            if status := self.failing.get(self.path):
                self.send_error(status)
                return None
            if self.path.endswith("/forbidden.tif"):
                self.send_error(403)
                return None
            try:
                return super().send_head()
            except OSError:  # a name too long for the file system: what a server says
                self.send_error(414)
                return None

    www = tmp_path_factory.mktemp("www")
    root, outside = www / "data", www / "outside"
    root.mkdir()
    outside.mkdir()
    rng = np.random.default_rng(1)
    secret = write_tif(outside / "secret.tif", rng.integers(1, 255, (1, 256, 256), dtype=np.uint8))
    write_sample(root / SCENE, size=2048, bands=4)
    (root / "sub").mkdir()
    write_tif(root / "sub" / "tile.tif", rng.integers(1, 60000, (4, 256, 256), dtype=np.uint16))
    write_tif(root / "forbidden.tif", rng.integers(1, 255, (1, 256, 256), dtype=np.uint8))
    (root / "notraster.tif").write_text("this is not a raster\n")

    with serving(Recording, www) as base:
        yield Remote(
            base=base,
            www=www,
            data=DataRoot(root=root, outside=outside, secret=secret, has_rgb=False),
            handler=Recording,
        )


@pytest.fixture(scope="module")
def served(
    remote: Remote, sample_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A real `satdask serve --data-root http://127.0.0.1:PORT/data/` process."""
    log = tmp_path_factory.mktemp("remote-server") / "server.log"
    with running_server(remote.root_url, sample_registry, log) as server:
        yield server


@pytest.fixture
def make_local(sample_registry: Path) -> Iterator[Callable[..., TestClient[Litestar]]]:
    """Factory: an in-process app over `data_root` (a folder or a URL)."""
    clients: list[TestClient[Litestar]] = []

    def make(data_root: Path | str) -> TestClient[Litestar]:
        # scenes of other bands than the sample model's (see test_model_check.py)
        settings = Settings(
            data_root=data_root, model=str(sample_registry), allow_model_mismatch=True
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


def without_latency(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "latency_ms"}


def outside_prefix(targets: list[str]) -> list[str]:
    """Request targets that, decoded and normalised as a server would, leave the prefix."""
    return [
        t
        for t in targets
        if not t.startswith(PREFIX)
        or not posixpath.normpath(unquote(urlsplit(t).path)).startswith(PREFIX)
    ]


# ---------------------------------------------------------------------------
# One tile over HTTP: the same answer, a small fraction of the bytes
# ---------------------------------------------------------------------------


def test_one_remote_tile_answers_as_the_local_file_for_a_fraction_of_its_bytes(
    remote: Remote, served: LiveServer, make_local: Callable[..., TestClient[Litestar]]
) -> None:
    size = remote.scene_bytes
    local = make_local(remote.data.root)
    with served.client() as http:
        start = remote.sent()
        info = http.get("/scenes/info", params={"path": SCENE})
        opened = remote.sent() - start
        assert info.status_code == 200, info.text
        assert info.json() == local.get("/scenes/info", params={"path": SCENE}).json()

        start = remote.sent()
        answer = http.post("/infer", json=TILE)
        tile = remote.sent() - start
    assert answer.status_code == 200, answer.text
    here = local.post("/infer", json=TILE)
    assert without_latency(answer.json()) == without_latency(here.json())

    print(
        f"remote root, {size} byte COG: open {opened} bytes ({100 * opened / size:.2f}%), "
        f"one tile {tile} bytes ({100 * tile / size:.2f}%)"
    )
    assert 0 < opened < 0.01 * size
    assert 0 < tile < 0.05 * size  # read over HTTP, and only that tile's bytes
    assert outside_prefix(remote.requests()) == []


def test_every_tile_and_both_forms_match_the_local_root(
    remote: Remote, served: LiveServer, make_local: Callable[..., TestClient[Litestar]]
) -> None:
    local = make_local(remote.data.root)
    grid = local.get("/scenes/info", params={"path": SCENE}).json()["grid"]
    tiles = [(r, c) for r in range(grid["rows"]) for c in range(grid["cols"])]
    with served.client() as http:
        for row, col in tiles[::5]:
            body = {"scene": SCENE, "row": row, "col": col}
            there, here = http.post("/infer", json=body), local.post("/infer", json=body)
            assert there.status_code == here.status_code == 200, (row, col, there.text)
            assert without_latency(there.json()) == without_latency(here.json())
        whole = {"tile_path": "sub/tile.tif"}
        there, here = http.post("/infer", json=whole), local.post("/infer", json=whole)
        assert there.status_code == 200, there.text
        assert there.json() == here.json()
        outside = http.post("/infer", json={**TILE, "row": grid["rows"]})
        assert outside.status_code == 404 and "outside" in outside.json()["detail"]
        bad = http.get("/scenes/info", params={"path": "notraster.tif"})
        assert bad.status_code == 422, bad.text
        assert bad.json() == local.get("/scenes/info", params={"path": "notraster.tif"}).json()


# ---------------------------------------------------------------------------
# Missing, forbidden and traversal: one answer, and no request outside the prefix
# ---------------------------------------------------------------------------


def test_a_missing_remote_scene_answers_as_a_missing_local_one(
    remote: Remote, served: LiveServer, make_local: Callable[..., TestClient[Litestar]]
) -> None:
    local = make_local(remote.data.root)
    names = ("missing.tif", "sub/missing.tif", "forbidden.tif", "../outside/secret.tif")
    before = len(remote.requests())
    with served.client() as http:
        for name in names:
            for route in JSON_ROUTES:
                there = http.post("/infer", content=json_body(route, name), headers=JSON)
                assert (there.status_code, there.json()) == (404, NOT_FOUND), (name, route)
            there = http.get("/scenes/info", params={"path": name})
            assert (there.status_code, there.json()) == (404, NOT_FOUND), name
    # the local answer for a missing file is the same body
    here = local.post("/infer", json={**TILE, "scene": "missing.tif"})
    assert (here.status_code, here.json()) == (404, NOT_FOUND)
    requested = remote.requests()[before:]
    assert f"{PREFIX}missing.tif" in requested and f"{PREFIX}sub/missing.tif" in requested
    assert f"{PREFIX}forbidden.tif" in requested  # asked, told 403, answered as missing
    assert not any("secret" in t for t in requested)  # '..' refused before any request


def test_an_error_names_the_scene_as_the_client_wrote_it(
    remote: Remote, make_local: Callable[..., TestClient[Litestar]]
) -> None:
    """The URL of `no crs.tif` holds `no%20crs.tif`: the error names the client's path."""
    name = "sub/no crs.tif"
    path = remote.data.root / name
    write_tif(path, np.ones((1, 256, 256), dtype=np.uint8), crs=None)
    try:
        r = make_local(remote.root_url).get("/scenes/info", params={"path": name})
    finally:
        path.unlink()
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{name}: no CRS"), r.text
    assert "127.0.0.1" not in r.text and "%20" not in r.text


def test_a_scene_uploaded_after_a_miss_is_found(remote: Remote, served: LiveServer) -> None:
    """GDAL remembers a missing URL for the life of the process; the service's look at a
    remote file bypasses that cache."""
    late = remote.data.root / "late.tif"
    with served.client() as http:
        assert http.get("/scenes/info", params={"path": "late.tif"}).status_code == 404
        shutil.copy(remote.data.root / "sub" / "tile.tif", late)
        try:
            found = http.get("/scenes/info", params={"path": "late.tif"})
        finally:
            late.unlink()
    assert found.status_code == 200, found.text


def test_the_traversal_corpus_is_refused_and_never_leaves_the_prefix(
    remote: Remote, served: LiveServer
) -> None:
    variants = corpus(remote.data)
    assert len(variants) >= 50
    root = RemoteRoot.parse(remote.root_url)
    before = len(remote.requests())
    with served.client() as http:
        leaks = (remote.base, "127.0.0.1", PREFIX, str(remote.www), "/vsi")
        answers = send_refused(http, variants, leaks=leaks)
    assert answers == 4 * len(variants)
    asked = remote.requests()[before:]
    assert outside_prefix(asked) == []
    # only names that pass the path rules reached the server, each as the URL it joins to
    allowed = set()
    for variant in variants:
        texts = [variant] if isinstance(variant, str) else []
        texts += [unquote(t.split("=", 1)[1], errors="replace") for t in query_targets(variant)]
        for text in texts:
            with contextlib.suppress(NotFoundError):
                allowed.add(urlsplit(root.join(text)[1]).path)
    assert asked and set(asked) <= allowed
    print(f"{len(variants)} variants, {answers} answers, {len(asked)} requests, all in {PREFIX}")


# ---------------------------------------------------------------------------
# The store failing after the open: retried reads, then 502 or 404
# ---------------------------------------------------------------------------


def metric(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


@pytest.fixture
def small_scene(remote: Remote, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh 512 px COG under the prefix; GDAL's own HTTP retries off, so only
    satdask's bounded retries (RasterSource.read) run, quickly."""
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    name = f"small-{len(remote.requests())}.tif"
    path = write_sample(remote.data.root / name, size=512, bands=2)
    try:
        yield name
    finally:
        remote.handler.failing.clear()
        path.unlink(missing_ok=True)


def test_a_store_that_stops_answering_is_502_after_the_bounded_retries(
    remote: Remote, small_scene: str, make_local: Callable[..., TestClient[Litestar]]
) -> None:
    from satdask.io.source import REMOTE_RETRIES

    client = make_local(remote.root_url)
    assert client.get("/scenes/info", params={"path": small_scene}).status_code == 200
    before = len(remote.requests())
    remote.handler.failing[PREFIX + small_scene] = 503
    r = client.post("/infer", json={"scene": small_scene, "row": 1, "col": 1})
    assert (r.status_code, r.json()) == (
        502,
        {
            "status_code": 502,
            "detail": f"{small_scene}: the data root did not answer; try again later",
        },
    )
    metrics = client.get("/metrics").text
    assert metric(metrics, "satdask_remote_read_retries_total") == REMOTE_RETRIES
    assert metric(metrics, "satdask_tile_read_failures_total") == 1
    # the first read and its retries went to the store, then one look asked it again
    assert len(remote.requests()) - before > REMOTE_RETRIES
    remote.handler.failing.clear()  # the store is back: the same tile is served
    assert client.post("/infer", json={"scene": small_scene, "row": 1, "col": 1}).status_code == 200


def test_a_remote_file_gone_after_the_open_is_404(
    remote: Remote, small_scene: str, make_local: Callable[..., TestClient[Litestar]]
) -> None:
    client = make_local(remote.root_url)
    assert client.get("/scenes/info", params={"path": small_scene}).status_code == 200
    (remote.data.root / small_scene).unlink()
    r = client.post("/infer", json={"scene": small_scene, "row": 0, "col": 1})
    assert (r.status_code, r.json()) == (404, NOT_FOUND)
    # forgotten, so the scene's metadata is not served from the cache either
    r = client.get("/scenes/info", params={"path": small_scene})
    assert (r.status_code, r.json()) == (404, NOT_FOUND)


# ---------------------------------------------------------------------------
# Listing, an unreachable store, the schema
# ---------------------------------------------------------------------------


def test_listing_a_remote_root_is_501_with_a_json_body(served: LiveServer) -> None:
    with served.client() as http:
        r = http.get("/scenes")
        schema = http.get("/schema/openapi.json").json()
    assert r.status_code == 501
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["status_code"] == 501 and "cannot be listed" in r.json()["detail"]
    responses = schema["paths"]["/scenes"]["get"]["responses"]
    assert {"200", "501"} <= set(responses)
    assert "ErrorBody" in str(responses["501"])
    assert "502" in schema["paths"]["/infer"]["post"]["responses"]
    assert "502" in schema["paths"]["/scenes/info"]["get"]["responses"]


def test_an_unreachable_remote_root_is_502_without_its_url(
    make_local: Callable[..., TestClient[Litestar]],
) -> None:
    port = free_port()  # nothing listens there
    client = make_local(f"http://127.0.0.1:{port}/data/")
    for r in (
        client.get("/scenes/info", params={"path": SCENE}),
        client.post("/infer", json=TILE),
        client.post("/infer", json={"tile_path": SCENE}),
    ):
        assert r.status_code == 502, r.text
        assert r.json() == {
            "status_code": 502,
            "detail": f"{SCENE}: the data root did not answer; try again later",
        }
    metrics = client.get("/metrics").text
    assert 'satdask_scene_opens_total{outcome="unavailable"} 3.0' in metrics


# ---------------------------------------------------------------------------
# The operator's URL, and joining a client's path under it
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("http://127.0.0.1:8080/data", "http://127.0.0.1:8080/data/"),
        ("https://example.org/a/b/", "https://example.org/a/b/"),
        ("HTTP://example.org", "http://example.org/"),
        ("s3://bucket/prefix", "s3://bucket/prefix/"),
        ("s3://bucket", "s3://bucket/"),
    ],
)
def test_remote_roots_are_normalised(text: str, url: str) -> None:
    settings = Settings.from_env({"SATDASK_DATA_ROOT": text})
    assert settings.data_root == RemoteRoot(url)
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://example.org/data/", "must be an http://, https:// or s3:// URL"),
        ("gs://bucket/data/", "must be an http://, https:// or s3:// URL"),
        ("http:///data/", "names no host"),
        ("https://user:pw@example.org/data/", "credentials in the URL"),
        ("http://example.org/data/?token=x", "no query or fragment"),
        ("http://example.org/data/#x", "no query or fragment"),
        ("http://example.org/data/../etc/", "may not hold '.' or '..'"),
        ("/vsicurl/http://example.org/data/", "give a remote root as its URL"),
    ],
)
def test_bad_remote_roots_raise_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env({"SATDASK_DATA_ROOT": text})
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("a.tif", "/data/a.tif"),
        ("sub/a b.TIF", "/data/sub/a%20b.TIF"),
        ("été.tif", "/data/%C3%A9t%C3%A9.tif"),
        ("sub//a.tif", "/data/sub/a.tif"),
        ("a;b=c&d.tif", "/data/a%3Bb%3Dc%26d.tif"),
    ],
)
def test_a_relative_path_joins_under_the_prefix(text: str, path: str) -> None:
    root = RemoteRoot.parse("http://127.0.0.1:8080/data/")
    assert root.join(text)[1] == "http://127.0.0.1:8080" + path


@pytest.mark.parametrize("text", ["a.tif?x=.tif", "a.tif#.tif", "x?/../../e.tif", "a\ud800.tif"])
def test_url_syntax_in_a_relative_path_is_refused(text: str) -> None:
    for root in ("http://h/data/", "s3://bucket/data/"):
        with pytest.raises(NotFoundError):
            RemoteRoot.parse(root).join(text)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*"./\\~%:?#@;= \x00ab", "..", ".tif", "%2e", "%2f", "http:", "//", "\uff0e", "é"]
        ),
        max_size=14,
    ).map("".join)
)
def test_fuzzed_paths_join_only_under_the_prefix(text: str) -> None:
    for prefix in ("http://127.0.0.1:8080/data/", "s3://bucket/data/"):
        root = RemoteRoot.parse(prefix)
        try:
            rel, url = root.join(text)
        except NotFoundError:
            continue
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == (root.scheme, urlsplit(prefix).netloc)
        assert not parts.query and not parts.fragment
        assert posixpath.normpath(unquote(parts.path)).startswith("/data/")
        assert ".." not in rel.split("/")


# ---------------------------------------------------------------------------
# The library, in process: one tile of a remote COG by range
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# An S3 data root: a real moto server on 127.0.0.1
# ---------------------------------------------------------------------------


def test_an_s3_prefix_serves_tiles_as_the_local_root(
    moto_s3: Any,
    remote: Remote,
    sample_registry: Path,
    tmp_path: Path,
    make_local: Callable[..., TestClient[Litestar]],
) -> None:
    fs, bucket = moto_s3.fs, moto_s3.bucket
    fs.put(str(remote.data.root / SCENE), f"{bucket}/scenes/{SCENE}")
    fs.put(str(remote.data.root / "sub" / "tile.tif"), f"{bucket}/scenes/sub/tile.tif")
    fs.put(str(remote.data.secret), f"{bucket}/private/secret.tif")
    local = make_local(remote.data.root)
    root = f"s3://{bucket}/scenes/"
    with (
        running_server(root, sample_registry, tmp_path / "s3.log", env=moto_s3.env) as server,
        server.client() as http,
    ):
        info = http.get("/scenes/info", params={"path": SCENE})
        assert info.status_code == 200, info.text
        assert info.json() == local.get("/scenes/info", params={"path": SCENE}).json()
        there, here = http.post("/infer", json=TILE), local.post("/infer", json=TILE)
        assert there.status_code == 200, there.text
        assert without_latency(there.json()) == without_latency(here.json())
        whole = {"tile_path": "sub/tile.tif"}
        assert http.post("/infer", json=whole).json() == local.post("/infer", json=whole).json()
        for name in ("missing.tif", "../private/secret.tif", "private/secret.tif"):
            r = http.post("/infer", json={**TILE, "scene": name})
            assert (r.status_code, r.json()) == (404, NOT_FOUND), name
        assert http.get("/scenes").status_code == 501
