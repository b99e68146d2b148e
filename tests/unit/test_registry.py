from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from satdask import ModelRegistry, RegistryError, ThresholdModel
from satdask.io.registry import parse_model_ref


@pytest.fixture
def model() -> ThresholdModel:
    return ThresholdModel.fit(np.arange(10.0), lineage={"scenes": [{"uri": "a.tif"}]})


def test_save_writes_one_checksummed_file_and_load_verifies_it(
    tmp_path: Path, model: ThresholdModel
) -> None:
    registry = ModelRegistry(tmp_path / "reg")
    saved = registry.save(model)
    path = tmp_path / "reg" / f"{saved.id}.json"
    body = json.loads(path.read_text())
    assert body["parameters"]["threshold"] == model.threshold
    assert body["lineage"] == {"scenes": [{"uri": "a.tif"}]}
    assert body["sha256"] == saved.sha256 and len(saved.sha256) == 64
    loaded = registry.load(saved.id)
    assert loaded.model == model and loaded.sha256 == saved.sha256
    assert loaded.model.lineage == model.lineage


def test_an_unchanged_model_still_gets_a_new_version(tmp_path: Path, model: ThresholdModel) -> None:
    registry = ModelRegistry(tmp_path)
    first, second = registry.save(model), registry.save(model)
    assert first.id != second.id
    assert [a.id for a in registry.list()] == [first.id, second.id]


def test_latest_is_an_atomically_replaced_symlink_not_a_copy(
    tmp_path: Path, model: ThresholdModel
) -> None:
    registry = ModelRegistry(tmp_path)
    registry.save(model)
    second = registry.save(model)
    link = tmp_path / "latest.json"
    assert link.is_symlink() and os.readlink(link) == f"{second.id}.json"
    assert registry.load("latest").id == second.id
    assert len(registry.list()) == 2  # the alias is not listed as an artifact


def test_artifacts_are_write_once(tmp_path: Path, model: ThresholdModel, monkeypatch) -> None:
    registry = ModelRegistry(tmp_path)
    saved = registry.save(model)
    before = (tmp_path / f"{saved.id}.json").read_bytes()
    monkeypatch.setattr("uuid.uuid4", lambda: __import__("uuid").UUID(saved.id))
    with pytest.raises(RegistryError, match="write-once"):
        registry.save(ThresholdModel(threshold=99.0))
    assert (tmp_path / f"{saved.id}.json").read_bytes() == before


def tamper(path: Path, edit) -> None:
    body = json.loads(path.read_text())
    edit(body)
    path.write_text(json.dumps(body))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b["parameters"].update(threshold=0.0), "checksum mismatch"),
        (lambda b: b.pop("lineage"), "missing lineage"),
        (lambda b: b.update(schema_version=99), "schema_version 99 is not supported"),
        (lambda b: b.update(kind="cnn"), "checksum mismatch"),
    ],
)
def test_tampered_or_malformed_artifacts_are_refused(
    tmp_path: Path, model: ThresholdModel, edit, message: str
) -> None:
    registry = ModelRegistry(tmp_path)
    saved = registry.save(model)
    tamper(tmp_path / f"{saved.id}.json", edit)
    with pytest.raises(RegistryError, match=message) as info:
        registry.load(saved.id)
    assert saved.id in str(info.value)  # names the file


def test_malformed_json_and_unknown_ids_are_refused(tmp_path: Path, model: ThresholdModel) -> None:
    registry = ModelRegistry(tmp_path)
    saved = registry.save(model)
    (tmp_path / f"{saved.id}.json").write_text("{not json")
    with pytest.raises(RegistryError, match="malformed model artifact"):
        registry.load(saved.id)
    with pytest.raises(RegistryError, match="no such model artifact"):
        registry.load("00000000-0000-4000-8000-000000000000")
    with pytest.raises(RegistryError, match=r"'\.\./x' is not a model id"):
        registry.load("../x")


def test_empty_registry_and_registry_that_is_a_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="has no model yet"):
        ModelRegistry(tmp_path).load()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegistryError, match="not a directory"):
        ModelRegistry(tmp_path / "file")


def test_model_references() -> None:
    assert parse_model_ref("models") == ("models", "latest")
    assert parse_model_ref("models:abc") == ("models", "abc")
    assert parse_model_ref("models:") == ("models", "latest")
