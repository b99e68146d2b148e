from __future__ import annotations

import os
from pathlib import Path

import pytest

from satdask.io.lineage import cached_file_sha256, canonical_sha256, file_sha256


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SATDASK_CACHE_DIR", str(cache))
    return cache


def test_cached_hash_equals_the_real_hash_and_is_stored(tmp_path: Path, private_cache: Path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    assert cached_file_sha256(path) == file_sha256(path)
    assert len(list((private_cache / "sha256").iterdir())) == 1
    assert cached_file_sha256(path) == file_sha256(path)


def test_a_modified_file_is_hashed_again_even_with_the_same_size_and_mtime(tmp_path: Path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"a" * 100)
    first = cached_file_sha256(path)
    st = os.stat(path)
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # forge the old mtime
    assert cached_file_sha256(path) == file_sha256(path) != first


def test_canonical_hash_ignores_key_order() -> None:
    assert canonical_sha256({"a": 1, "b": [1, 2]}) == canonical_sha256({"b": [1, 2], "a": 1})
    assert canonical_sha256({"a": 1}) != canonical_sha256({"a": 2})
