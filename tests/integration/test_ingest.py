"""ingest() against a real HTTP server on 127.0.0.1 and against local files."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from satdask.errors import IngestError
from satdask.io.download import IngestResult, ingest

PAYLOAD = bytes(range(256)) * 6000  # 1.5 MB: more than one read chunk
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder, records every request, and can hang up mid-body."""

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            self.server.hits.append(self.path)  # type: ignore[attr-defined]
        return ok

    def do_GET(self) -> None:
        if self.path == "/private/scene.tif":
            expected = "Basic " + base64.b64encode(b"user:s3cret").decode()
            if self.headers.get("Authorization") != expected:
                self.send_error(401)
                return
            self.path = "/scene.tif"
        if self.path == "/truncated.bin":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Server:
    root: Path
    base: str
    hits: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours proxy variables; the tests talk to 127.0.0.1 directly."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "scene.tif").write_bytes(PAYLOAD)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.daemon_threads = True
    hits: list[str] = []
    httpd.hits = hits  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", hits)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_downloads_into_a_new_directory_and_verifies(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "out" / "nested"
    result = ingest(server.url("scene.tif"), out, sha256=PAYLOAD_SHA)
    assert result == IngestResult(out / "scene.tif", PAYLOAD_SHA, downloaded=True)
    assert (out / "scene.tif").read_bytes() == PAYLOAD
    assert _names(out) == ["scene.tif"]
    assert server.hits == ["/scene.tif"]


def test_second_call_with_checksum_makes_no_request(server: Server, tmp_path: Path) -> None:
    ingest(server.url("scene.tif"), tmp_path, sha256=PAYLOAD_SHA)
    server.hits.clear()
    again = ingest(server.url("scene.tif"), tmp_path, sha256=PAYLOAD_SHA.upper())
    assert again == IngestResult(tmp_path / "scene.tif", PAYLOAD_SHA, downloaded=False)
    assert server.hits == []


def test_second_call_without_checksum_compares_and_keeps_the_file(
    server: Server, tmp_path: Path
) -> None:
    first = ingest(server.url("scene.tif"), tmp_path)
    inode = os.stat(first.path).st_ino
    server.hits.clear()
    again = ingest(server.url("scene.tif"), tmp_path)
    assert again == IngestResult(first.path, PAYLOAD_SHA, downloaded=False)
    assert server.hits == ["/scene.tif"]
    assert os.stat(first.path).st_ino == inode
    assert _names(tmp_path) == ["scene.tif", "www"]


def test_checksum_mismatch_leaves_nothing_behind(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    wrong = "0" * 64
    with pytest.raises(IngestError) as info:
        ingest(server.url("scene.tif"), out, sha256=wrong)
    message = str(info.value)
    assert server.url("scene.tif") in message
    assert wrong in message
    assert PAYLOAD_SHA in message
    assert _names(out) == []


def test_http_error_names_url_and_status(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(IngestError) as info:
        ingest(server.url("missing.tif"), out)
    message = str(info.value)
    assert server.url("missing.tif") in message
    assert "404" in message
    assert "\n" not in message
    assert _names(out) == []


def test_truncated_body_is_an_error_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="truncated") as info:
        ingest(server.url("truncated.bin"), tmp_path / "out")
    assert "10 of 1000" in str(info.value)
    assert _names(tmp_path / "out") == []


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/scene.tif"
    with pytest.raises(IngestError) as info:
        ingest(url, tmp_path / "out", timeout=5)
    assert url in str(info.value)
    assert _names(tmp_path / "out") == []


def test_existing_file_with_other_content_is_refused_and_untouched(
    server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "scene.tif").write_bytes(b"older content")
    with pytest.raises(IngestError, match="different content"):
        ingest(server.url("scene.tif"), out)
    assert server.hits == ["/scene.tif"]
    assert (out / "scene.tif").read_bytes() == b"older content"
    assert _names(out) == ["scene.tif"]


def test_existing_file_not_matching_the_checksum_is_refused_without_a_request(
    server: Server, tmp_path: Path
) -> None:
    (tmp_path / "scene.tif").write_bytes(b"older content")
    with pytest.raises(IngestError, match="different content"):
        ingest(server.url("scene.tif"), tmp_path, sha256=PAYLOAD_SHA)
    assert server.hits == []
    assert (tmp_path / "scene.tif").read_bytes() == b"older content"


def test_file_name_comes_from_the_url_path(server: Server, tmp_path: Path) -> None:
    result = ingest(server.url("scene.tif?token=abc#frag"), tmp_path / "out")
    assert result.path == tmp_path / "out" / "scene.tif"
    assert result.path.read_bytes() == PAYLOAD


def test_credentials_in_the_url_are_sent_as_basic_auth(server: Server, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="401"):
        ingest(server.url("private/scene.tif"), tmp_path / "anonymous")
    url = server.url("private/scene.tif").replace("http://", "http://user:s3cret@")
    result = ingest(url, tmp_path / "out", sha256=PAYLOAD_SHA)
    assert result.downloaded is True
    assert result.path.read_bytes() == PAYLOAD


def test_password_is_not_repeated_in_errors(server: Server, tmp_path: Path) -> None:
    url = server.url("missing.tif").replace("http://", "http://user:s3cret@")
    with pytest.raises(IngestError) as info:
        ingest(url, tmp_path / "out")
    assert "s3cret" not in str(info.value)
    assert "404" in str(info.value)


@pytest.mark.parametrize("source", ["path", "file_url"])
def test_local_sources(tmp_path: Path, source: str) -> None:
    src = tmp_path / "src" / "local scene.tif"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    url = str(src) if source == "path" else src.as_uri()
    result = ingest(url, tmp_path / "out", sha256=PAYLOAD_SHA)
    assert result == IngestResult(tmp_path / "out" / "local scene.tif", PAYLOAD_SHA, True)
    assert result.path.read_bytes() == PAYLOAD
    assert ingest(url, tmp_path / "out").downloaded is False


def test_missing_local_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tif"
    with pytest.raises(IngestError, match="no such file") as info:
        ingest(str(missing), tmp_path / "out")
    assert str(missing) in str(info.value)
    assert _names(tmp_path / "out") == []


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63, "0" * 65])
def test_malformed_checksum_names_the_field(tmp_path: Path, bad: str) -> None:
    with pytest.raises(IngestError, match="sha256"):
        ingest("http://127.0.0.1:9/scene.tif", tmp_path / "out", sha256=bad)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), "10"])
def test_bad_timeout_names_the_field(tmp_path: Path, timeout: Any) -> None:
    with pytest.raises(IngestError, match="timeout"):
        ingest("http://127.0.0.1:9/x.tif", tmp_path / "o", timeout=timeout)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:99999/scene.tif", "not a valid URL"),
        ("ftp://127.0.0.1/scene.tif", "unsupported scheme"),
        ("http://127.0.0.1:9/data/", "file name"),
        ("http://127.0.0.1:9", "file name"),
    ],
)
def test_urls_that_cannot_be_ingested(tmp_path: Path, url: str, problem: str) -> None:
    with pytest.raises(IngestError, match=problem):
        ingest(url, tmp_path / "out")
    assert not (tmp_path / "out").exists()
