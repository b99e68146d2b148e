"""Route tests with Litestar's TestClient: every endpoint, the error table, limits, API key."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from svc_support import API_KEY, DataRoot

from satdask import ModelRegistry
from service import Settings, create_app
from service.errors import status_for
from service.public import public_message, scrub
from service.settings import ConfigError

Client = TestClient[Litestar]
NOT_FOUND = {"status_code": 404, "detail": "no such scene under the data root"}


def tile(scene: str, row: int = 0, col: int = 0) -> dict[str, Any]:
    return {"scene": scene, "row": row, "col": col}


def assert_no_server_path(text: str, data: DataRoot) -> None:
    base = str(data.root.parent)
    assert base not in text
    assert str(data.root) not in text


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------


def test_health_and_ready(client: Client, sample_registry: Path) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    model_id = ModelRegistry(sample_registry).load().id
    assert client.get("/ready").json() == {"status": "ready", "model_id": model_id}


def test_infer_one_tile_of_a_scene(client: Client, data: DataRoot) -> None:
    r = client.post("/infer", json=tile("sample.tif", 1, 2))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "scene", "row", "col", "prediction", "mean_intensity", "std_intensity",
        "valid_fraction", "status", "bounds", "crs", "model_id", "latency_ms",
    }  # fmt: skip
    assert (body["scene"], body["row"], body["col"]) == ("sample.tif", 1, 2)
    assert body["prediction"] in (0, 1)
    assert body["status"] == "ok"
    assert body["crs"] == "EPSG:32633"
    assert body["valid_fraction"] == 1.0
    assert body["latency_ms"] > 0
    # the sample's upper-left corner is (500000, 5000000) at 10 m: tile (1, 2) is 2560 m wide
    assert body["bounds"] == [505120.0, 4994880.0, 507680.0, 4997440.0]


def test_infer_nodata_tile_has_no_prediction(make_client: Callable[..., Client]) -> None:
    client = make_client(tile_size=16)  # the sample's nodata collar is 16 px wide
    body = client.post("/infer", json=tile("sample.tif", 0, 0)).json()
    assert body["status"] == "nodata"
    assert body["prediction"] == -1
    assert body["mean_intensity"] is None and body["std_intensity"] is None
    assert body["valid_fraction"] == 0.0


def test_infer_tile_path_is_the_reference_contract(client: Client, sample_registry: Path) -> None:
    artifact = ModelRegistry(sample_registry).load()
    r = client.post("/infer", json={"tile_path": "sub/tile.tif"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"prediction", "mean_intensity", "model_path", "model_id"}
    assert body["model_id"] == artifact.id
    assert body["model_path"] == f"{artifact.id}.json"
    assert body["prediction"] == int(body["mean_intensity"] > artifact.model.threshold)


def test_tile_path_of_a_non_square_raster_is_its_valid_mean(client: Client, data: DataRoot) -> None:
    import rasterio

    with rasterio.open(data.root / "wide.tif") as src:
        pixels = src.read().astype("float64")
    body = client.post("/infer", json={"tile_path": "wide.tif"}).json()
    assert body["mean_intensity"] == pytest.approx(pixels[pixels != 0].mean(), rel=1e-12)


def test_tile_path_over_the_pixel_limit_is_422(make_client: Callable[..., Client]) -> None:
    client = make_client(max_raster_pixels=1000 * 1000)
    r = client.post("/infer", json={"tile_path": "big.tif"})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "big.tif: 1 band x 2048 rows x 2048 cols (4194304 px) is over the 1000000 px limit "
        "of the tile_path form; ask for its tiles with scene, row and col"
    )


def test_scenes_lists_only_servable_rasters(client: Client, data: DataRoot) -> None:
    body = client.get("/scenes").json()
    assert body["truncated"] is False
    listed = set(body["scenes"])
    assert {"sample.tif", "sub/tile.tif", "link-inside.tif", "wide.tif"} <= listed
    # hidden, escaping, VRT and non-file entries are not offered
    assert not listed & {".hidden.tif", "escape.tif", "evil.vrt", "linkdir/secret.tif", "dir.tif"}
    assert "percent%2e.tif" not in listed  # '%' is refused, so not listed either
    assert body["scenes"] == sorted(body["scenes"])


def test_scene_info(client: Client) -> None:
    r = client.get("/scenes/info", params={"path": "sample.tif"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "path": "sample.tif",
        "crs": "EPSG:32633",
        "shape": [4, 1024, 1024],
        "width": 1024,
        "height": 1024,
        "bands": 4,
        "dtype": "uint16",
        "nodata": 0.0,
        "bounds": [500000.0, 4989760.0, 510240.0, 5000000.0],
        "grid": {"tile_size": 256, "edge": "skip", "rows": 4, "cols": 4},
    }


def test_scene_info_follows_the_tile_size_and_edge_policy(
    make_client: Callable[..., Client],
) -> None:
    grid = make_client(tile_size=300, edge="pad").get("/scenes/info?path=sample.tif").json()
    assert grid["grid"] == {"tile_size": 300, "edge": "pad", "rows": 4, "cols": 4}
    grid = make_client(tile_size=300).get("/scenes/info?path=sample.tif").json()
    assert grid["grid"] == {"tile_size": 300, "edge": "skip", "rows": 3, "cols": 3}


def test_scene_without_a_full_tile_has_an_empty_grid(client: Client) -> None:
    info = client.get("/scenes/info", params={"path": "small.tif"}).json()
    assert (info["grid"]["rows"], info["grid"]["cols"]) == (0, 0)
    r = client.post("/infer", json=tile("small.tif"))
    assert r.status_code == 404
    assert r.json()["detail"] == (
        "small.tif: the scene (1 band x 100 rows x 100 cols) holds no whole tile of 256 px, "
        'so it has no tiles to ask for; predict it whole with {"tile_path": "small.tif"}, '
        "or serve it with a smaller --tile-size (SATDASK_TILE_SIZE) or --edge pad"
    )


def test_a_scene_too_large_to_predict_whole_and_without_a_tile_is_told_so(
    make_client: Callable[..., Client], data: DataRoot, tmp_path: Path
) -> None:
    from svc_support import write_tif

    root = tmp_path / "root"
    root.mkdir()
    write_tif(root / "strip.tif", np.ones((2, 100, 3000), dtype=np.uint8))
    client = make_client(data_root=root, max_raster_pixels=100_000)
    r = client.post("/infer", json=tile("strip.tif"))
    assert r.status_code == 404
    assert r.json()["detail"] == (
        "strip.tif: the scene (2 bands x 100 rows x 3000 cols) holds no whole tile of 256 px, "
        "so it has no tiles to ask for; serve it with a smaller --tile-size "
        "(SATDASK_TILE_SIZE) or --edge pad"
    )


def test_model_gives_id_sha_threshold_and_public_lineage(
    client: Client, sample_registry: Path, sample_tif: Path
) -> None:
    artifact = ModelRegistry(sample_registry).load()
    body = client.get("/model").json()
    assert body["id"] == artifact.id
    assert body["sha256"] == artifact.sha256
    assert body["kind"] == "threshold"
    assert body["threshold"] == artifact.model.threshold
    assert body["training"]["tile_count"] == 16
    assert body["lineage"]["tile_count"] == 16
    # the training scene lies outside the data root: only its file name is shown
    assert [s["uri"] for s in body["lineage"]["scenes"]] == [sample_tif.name]
    assert str(sample_tif.parent) not in json.dumps(body)
    assert str(sample_registry) not in json.dumps(body)


def test_metrics_are_prometheus_text(client: Client) -> None:
    client.post("/infer", json=tile("sample.tif", 1, 1))
    client.post("/infer", json=tile("missing.tif"))
    client.get("/nowhere")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert all(name.startswith("satdask_") for name in names), names
    assert 'satdask_http_requests_total{method="POST",route="/infer",status="200"} 1.0' in text
    assert 'satdask_http_requests_total{method="POST",route="/infer",status="404"} 1.0' in text
    assert 'satdask_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'satdask_http_request_duration_seconds_count{route="/infer"} 2.0' in text
    assert re.search(r'satdask_predictions_total\{class="(bright|dark)"\} 1\.0', text)
    assert "satdask_tile_read_failures_total 0.0" in text
    assert re.search(r'satdask_model_info\{id="[0-9a-f-]{36}",kind="threshold",sha256=', text)
    assert "satdask_model_loaded 1.0" in text
    assert "_created" not in text


def test_the_docs_page_escapes_what_the_schema_says() -> None:
    from service.docs import render_docs

    hostile = "<script>alert(1)</script><img src=//elsewhere.example/x>"
    schema = {
        "info": {"title": hostile, "version": "1", "description": hostile},
        "paths": {"/a": {"get": {"summary": hostile, "responses": {"200": {}}}}},
        "components": {"schemas": {"B": {"properties": {"x": {"description": hostile}}}}},
    }
    page = render_docs(schema, openapi_url="/schema/openapi.json")
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and 'id="op-get-a"' in page and 'id="schema-b"' in page


def test_openapi_schema_types_every_body(client: Client) -> None:
    schema = client.get("/schema/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {
        "/", "/infer", "/scenes", "/scenes/info", "/health", "/ready", "/model", "/metrics",
        "/map/locate", "/tiles/catalog.json", "/tiles/scenes/{rest}", "/tiles/runs/{rest}",
    }  # fmt: skip
    body = paths["/infer"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    refs = {item["$ref"].rsplit("/", 1)[-1] for item in body["oneOf"]}
    assert refs == {"TilePathRequest", "SceneTileRequest"}
    components = schema["components"]["schemas"]
    for name in refs:
        assert components[name]["additionalProperties"] is False
    for path, item in paths.items():
        for op in item.values():
            ok = op["responses"]["200"]["content"]
            media, spec = next(iter(ok.items()))
            if path == "/metrics":
                assert media.startswith("text/plain")
            else:
                assert "$ref" in spec["schema"] or "oneOf" in spec["schema"], path
            for status, response in op["responses"].items():
                if status != "200":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, status)


# ---------------------------------------------------------------------------
# Errors: one table, JSON bodies, no server paths
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"scene": "sample.tif"}',
        b'{"scene": "sample.tif", "row": -1, "col": 0}',
        b'{"scene": "sample.tif", "row": "0", "col": 0}',
        b'{"scene": "sample.tif", "row": 0.5, "col": 0}',
        b'{"scene": "sample.tif", "row": 0, "col": 0, "extra": 1}',
        b'{"tile_path": "sample.tif", "row": 0}',
        b'{"tile_path": 3}',
        b'{"scene": "", "row": 0, "col": 0}',
        b'{"scene": "sample.tif", "row": 99999999999999999999, "col": 0}',
        b'{"scene": "\xc0\xae\xc0\xae/sample.tif", "row": 0, "col": 0}',  # overlong UTF-8
        b'{"tile_path": "sample\xff.tif"}',  # not UTF-8 at all
        b'{"scene": "sample\\ud800.tif", "row": 0, "col": 0}',  # a lone surrogate escape
    ],
)
def test_malformed_bodies_are_400(client: Client, content: bytes) -> None:
    r = client.post("/infer", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["status_code"] == 400


def test_missing_query_parameter_is_400(client: Client) -> None:
    r = client.get("/scenes/info")
    assert r.status_code == 400
    assert r.json()["status_code"] == 400


def test_a_refused_query_is_not_echoed(client: Client, data: DataRoot) -> None:
    r = client.get("/scenes/info", params={"path": f"{data.root}/" + "a" * 1100 + ".tif"})
    assert r.status_code == 400
    assert r.json() == {
        "status_code": 400,
        "detail": "Validation failed for GET /scenes/info",
        "extra": [
            {"message": "Expected `str` of length <= 1024", "key": "path", "source": "query"}
        ],
    }


@pytest.mark.parametrize(("row", "col"), [(4, 0), (0, 4), (100, 100)])
def test_tile_outside_the_grid_is_404(client: Client, row: int, col: int) -> None:
    r = client.post("/infer", json=tile("sample.tif", row, col))
    assert r.status_code == 404
    assert r.json()["detail"] == (
        f"sample.tif: tile ({row}, {col}) is outside the scene's grid of 4 rows x 4 cols "
        "of 256 px tiles (edge=skip); rows and cols count from 0"
    )


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("notraster.tif", "notraster.tif: not a readable raster"),
        ("empty.tif", "empty.tif: file is empty"),
        ("disguised.tif", "disguised.tif: not a readable raster"),
        ("nocrs.tif", "nocrs.tif: no CRS"),
    ],
)
def test_unreadable_rasters_are_422(
    client: Client, data: DataRoot, name: str, fragment: str
) -> None:
    for r in (
        client.post("/infer", json=tile(name)),
        client.post("/infer", json={"tile_path": name}),
        client.get("/scenes/info", params={"path": name}),
    ):
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith(fragment)
        assert_no_server_path(r.text, data)


def test_errors_name_the_scene_by_the_clients_own_path(
    make_client: Callable[..., Client], data: DataRoot, tmp_path: Path
) -> None:
    """An error carries the file it names (`SatdaskError.uri`) and the service puts the
    client's path in its place: a scene reached through a symlink keeps the client's name,
    not the one it resolves to, and no server path is left."""
    import shutil

    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    shutil.copy(data.root / "nocrs.tif", root / "real" / "nocrs.tif")
    shutil.copy(data.root / "truncated.tif", root / "real" / "truncated.tif")
    (root / "alias.tif").symlink_to(Path("real", "nocrs.tif"))
    (root / "cut.tif").symlink_to(Path("real", "truncated.tif"))
    client = make_client(data_root=root)
    for name in ("alias.tif", "real/nocrs.tif", "alias.tif"):  # the second alias: cached
        for r in (
            client.post("/infer", json=tile(name)),
            client.post("/infer", json={"tile_path": name}),
            client.get("/scenes/info", params={"path": name}),
        ):
            assert r.status_code == 422, r.text
            assert r.json()["detail"].startswith(f"{name}: no CRS"), r.text
            assert str(tmp_path) not in r.text and "<path>" not in r.text
    failed = [client.post("/infer", json=tile("cut.tif", 1, col)) for col in range(2)]
    failed = [r for r in failed if r.status_code != 200]
    assert failed
    for r in failed:
        detail = r.json()["detail"]
        assert detail.startswith("cut.tif: tile (1, "), detail  # GDAL's text keeps its base name
        assert "real/" not in detail and str(tmp_path) not in detail


def test_undecodable_tile_is_422_and_named(client: Client, data: DataRoot) -> None:
    answers = {
        (row, col): client.post("/infer", json=tile("truncated.tif", row, col))
        for row in range(2)
        for col in range(2)
    }
    failed = {k: r for k, r in answers.items() if r.status_code != 200}
    assert failed, "the truncated COG should have tiles that cannot be decoded"
    for (row, col), r in failed.items():
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert detail.startswith(f"truncated.tif: tile ({row}, {col}) cannot be read")
        assert_no_server_path(r.text, data)
    metrics = client.get("/metrics").text
    assert f"satdask_tile_read_failures_total {float(len(failed))}" in metrics


def test_body_over_the_limit_is_413(make_client: Callable[..., Client]) -> None:
    client = make_client(max_body_bytes=1024)
    body = json.dumps({"scene": "a" * 2000 + ".tif", "row": 0, "col": 0})
    r = client.post("/infer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"status_code": 413, "detail": "Request Entity Too Large"}


def test_model_not_loaded_is_503(make_client: Callable[..., Client]) -> None:
    client = make_client(model=None)
    assert client.get("/health").status_code == 200
    for r in (
        client.get("/ready"),
        client.get("/model"),
        client.post("/infer", json=tile("sample.tif")),
        client.post("/infer", json={"tile_path": "sub/tile.tif"}),
    ):
        assert r.status_code == 503
        assert r.json() == {
            "status_code": 503,
            "detail": "model not loaded; the service is not ready",
        }
    assert "satdask_model_loaded 0.0" in client.get("/metrics").text


def test_unknown_route_and_method(client: Client) -> None:
    assert client.get("/nowhere").json() == {"status_code": 404, "detail": "Not Found"}
    r = client.get("/infer")
    assert r.status_code == 405
    assert r.json()["status_code"] == 405


def test_a_bug_answers_500_without_details(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("/secret/server/path exploded")

    monkeypatch.setattr("service.app.infer_block", boom)
    r = client.post("/infer", json=tile("sample.tif"))
    assert r.status_code == 500
    assert r.json() == {"status_code": 500, "detail": "internal server error"}


def test_error_table_and_message_scrubbing(tmp_path: Path) -> None:
    from satdask.errors import GridError, RegistryError, SatdaskError, SceneError
    from service.errors import ModelNotReadyError, NotFoundError, TileOutsideGridError

    assert status_for(NotFoundError()) == 404
    assert status_for(TileOutsideGridError("x")) == 404
    assert status_for(SceneError("x")) == 422
    assert status_for(GridError("x")) == 422
    assert status_for(ModelNotReadyError()) == 503
    assert status_for(RegistryError("x")) == 503
    assert status_for(SatdaskError("x")) == 400
    assert status_for(ValueError("x")) == 500
    root = tmp_path / "root"
    message = f"{root}/a/b.tif: bad (Read failed: {root}/a/b.tif, also /etc/shadow and '/x/y')"
    assert scrub(message, root) == "a/b.tif: bad (Read failed: a/b.tif, also <path> and '<path>')"
    # an error that names its file (uri) is given that file's public name, then scrubbed
    named = SceneError(f"{root}/a/b.tif: bad (see {root}/a/b.tif, /etc/x)", uri=f"{root}/a/b.tif")
    assert public_message(named, root) == "a/b.tif: bad (see a/b.tif, <path>)"
    elsewhere = SceneError("/srv/x/c.tif: bad", uri="/srv/x/c.tif")
    assert public_message(elsewhere, root) == "c.tif: bad"
    assert public_message(SceneError("alias.tif: bad", uri="alias.tif"), root) == "alias.tif: bad"


def test_no_response_contains_a_server_path(client: Client, data: DataRoot) -> None:
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/scenes", {}),
        ("GET", "/model", {}),
        ("GET", "/metrics", {}),
        ("GET", "/schema/openapi.json", {}),
        ("GET", "/scenes/info", {"params": {"path": "sample.tif"}}),
        ("POST", "/infer", {"json": tile("sample.tif")}),
        ("POST", "/infer", {"json": tile("truncated.tif", 1, 1)}),
        ("POST", "/infer", {"json": {"tile_path": "notraster.tif"}}),
        ("POST", "/infer", {"json": tile(str(data.secret))}),
    ]
    for method, url, kwargs in requests:
        assert_no_server_path(client.request(method, url, **kwargs).text, data)


# ---------------------------------------------------------------------------
# API key
# ---------------------------------------------------------------------------


def test_api_key_guards_every_route_but_health_and_the_pointer(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(api_key=API_KEY)
    assert client.get("/health").status_code == 200
    assert client.get("/").json()["docs"] == "/docs"  # where to read on, even without a key
    for method, url in [
        ("GET", "/ready"),
        ("GET", "/model"),
        ("GET", "/scenes"),
        ("GET", "/scenes/info?path=sample.tif"),
        ("GET", "/metrics"),
        ("GET", "/schema/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/infer"),
    ]:
        kwargs: dict[str, Any] = {"json": tile("sample.tif")} if method == "POST" else {}
        denied = client.request(method, url, **kwargs)
        assert denied.status_code == 401, url
        assert denied.json()["detail"] == "missing or invalid API key"
        assert denied.headers["www-authenticate"].startswith("Bearer")
        wrong = client.request(method, url, headers={"X-API-Key": API_KEY + "x"}, **kwargs)
        assert wrong.status_code == 401, url
        for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}):
            assert client.request(method, url, headers=headers, **kwargs).status_code == 200, url


def test_api_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from service import auth

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    guard = auth.api_key_guard("k" * 20)

    from types import SimpleNamespace

    from litestar.datastructures import Headers
    from litestar.exceptions import NotAuthorizedException

    connection = SimpleNamespace(headers=Headers({"authorization": "Bearer nope"}))
    with pytest.raises(NotAuthorizedException, match="invalid API key"):
        guard(connection, SimpleNamespace(opt={}))  # type: ignore[arg-type]
    assert calls == [(b"nope", b"k" * 20)]


def test_openapi_documents_the_security_schemes(make_client: Callable[..., Client]) -> None:
    client = make_client(api_key=API_KEY)
    schema = client.get("/schema/openapi.json", headers={"X-API-Key": API_KEY}).json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/health"]["get"]["security"] == [{}]


# ---------------------------------------------------------------------------
# Settings, caches, lifespan
# ---------------------------------------------------------------------------


def test_settings_from_env_then_overrides(data: DataRoot) -> None:
    env = {
        "SATDASK_DATA_ROOT": str(data.root),
        "SATDASK_PORT": "9000",
        "SATDASK_TILE_SIZE": "128",
        "SATDASK_EDGE": "pad",
        "SATDASK_ACCESS_LOG": "yes",
        "SATDASK_API_KEY": "sekrit-key",
        "SATDASK_UNRELATED": "ignored",
    }
    s = Settings.from_env(env, port=9100, workers=None)
    assert (s.port, s.tile_size, s.edge, s.access_log, s.workers) == (9100, 128, "pad", True, 1)
    assert s.data_root == data.root.resolve()
    assert s.api_key == "sekrit-key" and "sekrit" not in repr(s)
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no data root"),
        ({"SATDASK_DATA_ROOT": "/nonexistent/dir"}, "is not a directory"),
        ({"SATDASK_PORT": "http"}, "SATDASK_PORT must be a positive integer"),
        ({"SATDASK_PORT": "70000"}, "SATDASK_PORT must be 1..65535"),
        ({"SATDASK_EDGE": "wrap"}, "SATDASK_EDGE must be one of skip, pad"),
        ({"SATDASK_TILE_SIZE": "0"}, "SATDASK_TILE_SIZE must be a positive integer"),
        ({"SATDASK_ACCESS_LOG": "maybe"}, "SATDASK_ACCESS_LOG must be true or false"),
        ({"SATDASK_LOG_LEVEL": "loud"}, "SATDASK_LOG_LEVEL must be one of"),
    ],
)
def test_bad_settings_raise_one_clear_error(
    data: DataRoot, env: dict[str, str], message: str
) -> None:
    full = {"SATDASK_DATA_ROOT": str(data.root), **env} if env else {}
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(full)


def test_settings_are_not_read_at_import() -> None:
    import subprocess
    import sys

    from svc_support import clean_env

    code = "import service, service.app, service.server; print('imported')"
    env = clean_env(SATDASK_DATA_ROOT="/nonexistent", SATDASK_PORT="not a port")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "imported"


def test_a_model_that_fails_its_checksum_stops_startup(
    data: DataRoot, sample_registry: Path, tmp_path: Path
) -> None:
    from satdask.errors import RegistryError

    registry = tmp_path / "registry"
    artifact = ModelRegistry(sample_registry).load()
    registry.mkdir()
    body = json.loads(Path(artifact.uri).read_text())
    body["parameters"]["threshold"] += 1.0
    (registry / f"{artifact.id}.json").write_text(json.dumps(body))
    app = create_app(Settings(data_root=data.root, model=f"{registry}:{artifact.id}"))
    with pytest.raises(BaseException) as info, TestClient(app):
        pass
    errors = leaves(info.value)
    assert [type(e) for e in errors] == [RegistryError]
    assert "checksum mismatch" in str(errors[0])


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def test_scenes_are_opened_once_and_the_cache_is_bounded(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(scene_cache=2)
    store = client.app.state.runtime.scenes
    for _ in range(3):
        client.post("/infer", json=tile("sample.tif"))
    assert store.opened == 1
    for name in ("sub/tile.tif", "link-inside.tif", "wide.tif"):
        client.get("/scenes/info", params={"path": name})
    assert len(store) == 2
    client.post("/infer", json=tile("sample.tif"))
    assert store.opened == 5  # evicted, so opened again


def opens(client: Client) -> dict[str, float]:
    found = re.findall(
        r'satdask_scene_opens_total\{outcome="(\w+)"\} (\S+)', client.get("/metrics").text
    )
    return {outcome: float(value) for outcome, value in found}


def test_every_file_looked_at_is_counted_by_outcome(client: Client) -> None:
    zero = {"ok": 0, "empty": 0, "not_tiff": 0, "unreadable": 0, "missing": 0, "unavailable": 0}
    assert opens(client) == zero
    for name in ("sample.tif", "sample.tif", "empty.tif", "disguised.tif", "nocrs.tif"):
        client.get("/scenes/info", params={"path": name})
    client.post("/infer", json=tile("sub/tile.tif"))
    # once per file (then cached), never for a refused or missing path
    for path in ("missing.tif", "escape.tif", "../x.tif", "evil.vrt"):
        assert client.post("/infer", json=tile(path)).status_code == 404
    assert opens(client) == {**zero, "ok": 2, "empty": 1, "not_tiff": 1, "unreadable": 1}


def test_a_rewritten_scene_is_reopened(
    make_client: Callable[..., Client], data: DataRoot, tmp_path: Path
) -> None:
    import os
    import shutil

    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(data.root / "sub" / "tile.tif", root / "a.tif")
    client = make_client(data_root=root)
    first = client.post("/infer", json={"tile_path": "a.tif"}).json()
    shutil.copy(data.root / "wide.tif", root / "a.tif")
    st = os.stat(root / "a.tif")
    os.utime(root / "a.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = client.post("/infer", json={"tile_path": "a.tif"}).json()
    assert first["mean_intensity"] != second["mean_intensity"]


def test_lifespan_sets_and_restores_gdal_options(
    data: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("GDAL_SKIP", "JP2OpenJPEG")
    monkeypatch.delenv("GDAL_PAM_ENABLED", raising=False)
    with TestClient(create_app(Settings(data_root=data.root))):
        assert os.environ["GDAL_SKIP"] == "JP2OpenJPEG VRT"
        assert os.environ["GDAL_PAM_ENABLED"] == "NO"
        assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"]
    assert os.environ["GDAL_SKIP"] == "JP2OpenJPEG"
    assert "GDAL_PAM_ENABLED" not in os.environ


def test_serve_disables_vrt_before_gdal_starts(data: DataRoot, sample_registry: Path) -> None:
    """In a fresh process, the options `satdask serve` exports really unregister VRT."""
    import subprocess
    import sys

    from svc_support import clean_env

    from service.gdal import service_gdal_env

    code = "import rasterio\nwith rasterio.Env() as env: print('VRT' in env.drivers())"
    env = clean_env(**service_gdal_env({}, cache_mb=64))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_the_service_read_is_read_tile(client: Client, data: DataRoot) -> None:
    """The service reads through the scene's cached source: the same bytes as read_tile."""
    import numpy as np

    from satdask import open_scene, read_tile

    rt = client.app.state.runtime
    opened = rt.scene("sample.tif")
    scene = open_scene(data.root / "sample.tif")
    for row, col in [(0, 0), (1, 3), (3, 2)]:
        mine = rt.read(opened, row, col, opened.grid)
        theirs = read_tile(scene, row, col, grid=opened.grid)
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
