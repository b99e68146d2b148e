"""A real `satdask serve` process on 127.0.0.1, driven with httpx."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from support import stop_process
from svc_support import (
    API_KEY,
    DataRoot,
    LiveServer,
    clean_env,
    free_port,
    serve_command,
    wait_until_ready,
)

from satdask import ModelRegistry

NOT_FOUND = {"status_code": 404, "detail": "no such scene under the data root"}


def test_every_endpoint(live_server: LiveServer, data: DataRoot, sample_registry: Path) -> None:
    model_id = ModelRegistry(sample_registry).load().id
    with live_server.client() as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/ready").json() == {"status": "ready", "model_id": model_id}
        assert http.get("/model").json()["id"] == model_id
        assert "sample.tif" in http.get("/scenes").json()["scenes"]
        info = http.get("/scenes/info", params={"path": "sample.tif"}).json()
        assert info["grid"] == {"tile_size": 256, "edge": "skip", "rows": 4, "cols": 4}
        tile = http.post("/infer", json={"scene": "sample.tif", "row": 2, "col": 1})
        assert tile.status_code == 200
        assert tile.json()["status"] == "ok" and tile.json()["model_id"] == model_id
        whole = http.post("/infer", json={"tile_path": "sub/tile.tif"})
        assert whole.status_code == 200 and whole.json()["model_id"] == model_id
        schema = http.get("/schema/openapi.json").json()
        assert "/infer" in schema["paths"]
        metrics = http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'route="/infer",status="200"' in metrics.text


class PageReferences(HTMLParser):
    """Everything a page could load or point at (URL attributes, CSS url() and @import),
    the tags that would run or embed something, its anchors and its visible text."""

    URL_ATTRS = frozenset({"href", "src", "srcset", "action", "formaction", "poster", "data"})
    ACTIVE_TAGS = frozenset({"script", "iframe", "object", "embed", "frame", "base", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.active: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.ACTIVE_TAGS:
            self.active.append(tag)
        for name, value in attrs:
            if name in self.URL_ATTRS and value is not None:
                self.refs += [v.strip().split(" ")[0] for v in value.split(",")]
            if name == "id" and value:
                self.ids.add(value)
            if name == "style" and value:
                self.refs += css_refs(value)
            if name.startswith("on"):
                self.active.append(f"{tag} {name}")

    def handle_data(self, data: str) -> None:
        self.refs += css_refs(data) if "{" in data else []
        self.text.append(data)


def css_refs(css: str) -> list[str]:
    found = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    return found + re.findall(r"@import\s+['\"]([^'\"]+)", css)


def test_the_api_docs_work_offline(live_server: LiveServer) -> None:
    """GET / says where the docs are; the docs page, and the old Swagger UI address, load
    nothing from another host (nor anything at all but this server's own addresses),
    run no script, and show every operation of the served OpenAPI document."""
    host = urlsplit(live_server.url).netloc
    with live_server.client(key=None) as anonymous:
        pointer = anonymous.get("/")
        assert anonymous.get("/docs").status_code == 401  # behind the key, as the schema
    assert pointer.status_code == 200, pointer.text
    where = pointer.json()
    assert where == {"docs": "/docs", "openapi": "/schema/openapi.json", "health": "/health"}
    with live_server.client() as http:
        schema = http.get(where["openapi"]).json()
        for start in (where["docs"], "/schema/swagger"):
            page = http.get(start, follow_redirects=True)
            assert page.status_code == 200, (start, page.text[:200])
            assert page.headers["content-type"].startswith("text/html"), start
            assert "default-src 'none'" in page.headers["content-security-policy"]
            parsed = PageReferences()
            parsed.feed(page.text)
            assert parsed.active == [], start  # no script, frame, <link> or on* handler
            for ref in parsed.refs:
                target = urlsplit(urljoin(str(page.url), ref))
                assert (target.scheme, target.netloc) == ("http", host), (start, ref)
                if ref.startswith("#"):
                    assert ref[1:] in parsed.ids, (start, ref)
                else:
                    fetched = http.get(target.geturl())
                    assert fetched.status_code == 200, (start, ref)
            assert where["openapi"] in parsed.refs
            text = " ".join(" ".join(parsed.text).split())
            operations = [(m.upper(), p) for p, ops in schema["paths"].items() for m in ops]
            assert len(operations) >= 8
            for method, path in operations:
                assert f"{method} {path}" in text, (start, method, path)
            for name in schema["components"]["schemas"]:
                assert f"schema-{name.lower()}" in parsed.ids, name


def test_errors_over_the_wire(live_server: LiveServer, data: DataRoot) -> None:
    with live_server.client() as http:
        bad = http.post("/infer", content=b"{oops", headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert http.post("/infer", json={"scene": "sample.tif"}).status_code == 400
        outside = http.post("/infer", json={"scene": "sample.tif", "row": 9, "col": 0})
        assert outside.status_code == 404
        assert http.post("/infer", json={"tile_path": "notraster.tif"}).status_code == 422
        big = http.post(
            "/infer",
            content=b'{"scene": "' + b"a" * 20_000 + b'.tif", "row": 0, "col": 0}',
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413
        for r in (bad, outside, big):
            assert r.headers["content-type"].startswith("application/json")
            assert str(data.root) not in r.text


def test_api_key_over_the_wire(live_server: LiveServer) -> None:
    with live_server.client(key=None) as http:
        assert http.get("/health").status_code == 200
        for url in ("/ready", "/model", "/scenes", "/metrics", "/schema/openapi.json"):
            assert http.get(url).status_code == 401, url
            assert http.get(url, headers={"X-API-Key": "wrong"}).status_code == 401, url
            bearer = {"Authorization": f"Bearer {API_KEY}"}
            assert http.get(url, headers=bearer).status_code == 200, url
        denied = http.post("/infer", json={"scene": "sample.tif", "row": 0, "col": 0})
        assert denied.status_code == 401
        assert denied.json() == {"status_code": 401, "detail": "missing or invalid API key"}


def test_the_server_disabled_gdal_vrt(live_server: LiveServer) -> None:
    assert "GDAL VRT driver disabled" in live_server.log.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/registry"], "registry does not exist"),
        (["--model", "{registry}:not-an-id"], "is not a model id"),
        ([], "no model: pass --model"),
        (["--model", "{registry}", "--data-root", "/nonexistent"], "is not a directory"),
        (["--model", "{registry}", "--data-root", "ftp://h/x/"], "http://, https:// or s3://"),
    ],
)
def test_startup_fails_with_one_clear_line(
    data: DataRoot, sample_registry: Path, args: list[str], message: str
) -> None:
    argv = [a.format(registry=sample_registry) for a in args]
    if "--data-root" not in argv:
        argv += ["--data-root", str(data.root)]
    out = subprocess.run(
        serve_command(*argv, "--port", "9"),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("satdask: error: ") and message in lines[0]


def test_a_tampered_model_stops_startup(
    data: DataRoot, sample_registry: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    registry = tmp_path / "registry"
    shutil.copytree(sample_registry, registry, symlinks=True)
    artifact = ModelRegistry(registry).load()
    path = registry / f"{artifact.id}.json"
    body = json.loads(path.read_text())
    body["parameters"]["threshold"] = 0.0
    path.write_text(json.dumps(body))
    out = subprocess.run(
        serve_command("--data-root", str(data.root), "--model", str(registry), "--port", "9"),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "checksum mismatch" in out.stderr


def test_settings_come_from_the_environment(
    data: DataRoot, sample_registry: Path, tmp_path: Path
) -> None:
    """SATDASK_* variables configure `satdask serve` with no flag at all."""
    port = free_port()
    env = clean_env(
        SATDASK_DATA_ROOT=str(data.root),
        SATDASK_MODEL=str(sample_registry),
        SATDASK_PORT=str(port),
        SATDASK_TILE_SIZE="128",
    )
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(serve_command(), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, proc, log)
        info = httpx.get(f"{url}/scenes/info", params={"path": "sample.tif"}).json()
        assert info["grid"]["tile_size"] == 128
    finally:
        stop_process(proc)
