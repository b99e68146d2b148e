"""Path containment: the traversal corpus gets one answer, and nothing outside the root opens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from svc_support import DataRoot
from traversal import JSON_ROUTES, QUERY_ROUTE, corpus, expected_status, utf8_text

from service.errors import NotFoundError
from service.paths import check_relative, resolve_under

Client = TestClient[Litestar]
NOT_FOUND = {"status_code": 404, "detail": "no such scene under the data root"}


def answers(client: Client, path: str) -> list[Any]:
    """The three ways to name a file: scene form, tile_path form, scene info."""
    return [
        client.post("/infer", json={"scene": path, "row": 0, "col": 0}),
        client.post("/infer", json={"tile_path": path}),
        client.get("/scenes/info", params={"path": path}),
    ]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the service opens (its header read from the descriptor) or hands to GDAL
    (as /proc/self/fd/N), recorded by the path the open file really has."""
    import os

    import service.scenes

    seen: list[Path] = []
    real_open, real_probe = service.scenes.open_under, service.scenes.probe_uri

    def open_under(root: Any, text: object, **kwargs: Any) -> Any:
        rel, file = real_open(root, text, **kwargs)
        seen.append(Path(os.readlink(file.path)))
        return rel, file

    def probe_uri(uri: str) -> Any:
        seen.append(Path(os.readlink(uri)))
        return real_probe(uri)

    monkeypatch.setattr(service.scenes, "open_under", open_under)
    monkeypatch.setattr(service.scenes, "probe_uri", probe_uri)
    return seen


def test_every_traversal_attempt_gets_the_answer_of_a_missing_file(
    client: Client, data: DataRoot, opened: list[Path]
) -> None:
    variants = utf8_text(data)
    assert len(variants) >= 50
    for path in [*variants, "missing.tif", "sub/missing.tif"]:
        for route, r in zip((*JSON_ROUTES, QUERY_ROUTE), answers(client, path), strict=True):
            assert r.status_code == expected_status(path, route), (path, route, r.text)
            if r.status_code == 404:
                assert r.json() == NOT_FOUND, path
            else:  # an empty or over-long path: malformed, refused before any lookup
                assert r.json()["status_code"] == 400, path
    assert opened == []  # refused before anything was opened or read
    assert "secret" not in client.get("/metrics").text


def test_files_inside_the_root_are_served_through_links_inside_it(
    client: Client, data: DataRoot, opened: list[Path]
) -> None:
    for path in ("link-inside.tif", "sub/tile.tif", "./sub/tile.tif", "sub//tile.tif"):
        assert [r.status_code for r in answers(client, path)] == [200, 200, 200], path
    root = data.root.resolve()
    assert opened and all(p.resolve().is_relative_to(root) for p in opened)


def test_a_vrt_disguised_as_tif_is_never_handed_to_gdal(
    client: Client, data: DataRoot, opened: list[Path]
) -> None:
    for r in answers(client, "disguised.tif"):
        assert r.status_code == 422
        assert "not a TIFF" in r.text
    assert all(p.name == "disguised.tif" for p in opened)  # sniffed, never opened by GDAL


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(
            [*"./\\~%:\x00ab-_ ", "..", "tif", ".tif", "vrt", "%2e", "sub", "escape", "linkdir"]
        ),
        max_size=16,
    ).map("".join)
)
def test_fuzzed_paths_never_leave_the_root(data: DataRoot, text: str) -> None:
    root = data.root.resolve()
    try:
        rel, real, _ = resolve_under(root, text)
    except NotFoundError:
        return
    assert real.resolve().is_relative_to(root)
    assert real.suffix.lower() in {".tif", ".tiff"}
    assert ".." not in Path(rel).parts


@pytest.mark.parametrize(
    "text",
    ["a.tif", "sub/a.TIF", "deep/er/a.tiff", "./a.tif", "a b.tif", "été.tif"],
)
def test_ordinary_relative_names_pass_the_syntax_check(text: str) -> None:
    check_relative(text)


def test_corpus_paths_fail_the_syntax_check_or_resolution(data: DataRoot) -> None:
    root = data.root.resolve()
    for text in [*corpus(data), "a" * 2000 + ".tif", None, 3]:
        with pytest.raises(NotFoundError):
            resolve_under(root, text)


def test_the_listing_shows_no_escaping_entry(
    make_client: Callable[..., Client], data: DataRoot
) -> None:
    listed = make_client().get("/scenes").json()["scenes"]
    root = data.root.resolve()
    for rel in listed:
        assert (root / rel).resolve().is_relative_to(root)
