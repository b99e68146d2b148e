"""`satdask models import`: an ONNX model and its STAC MLM metadata into a registry.

The CLI runs as a real subprocess. A good import prints one line and leaves a
write-once blob named by the model's sha256 beside a normal artifact; every bad input
is one `satdask: error:` line, a non-zero exit, and a registry left byte for byte as
it was (or never created).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from satdask.errors import RegistryError
from satdask.io.registry import ModelRegistry
from satdask.io.sample_model import segmentation_model, window_classifier, write_model
from satdask.models.onnx import OnnxModel

SATDASK = Path(sys.executable).parent / "satdask"
TIMEOUT = 180
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def satdask(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SATDASK), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def succeeded(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("satdask: error: "), lines[0]
    assert proc.stdout == ""
    return lines[0]


def snapshot(path: Path) -> dict[str, bytes] | None:
    """Every file under `path` with its bytes (None: the path does not exist)."""
    if not path.exists():
        return None
    return {
        str(p.relative_to(path)): (b"-> " + str(p.readlink()).encode())
        if p.is_symlink()
        else p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


@pytest.fixture
def seg(tmp_path: Path) -> tuple[Path, Path]:
    data, metadata = segmentation_model(seed=1)
    return write_model(tmp_path, data, metadata, name="seg")


def test_import_prints_the_model_and_list_shows_it(seg: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, metadata_path = seg
    registry = tmp_path / "registry"
    out = succeeded(
        satdask("models", "import", model_path, "--metadata", metadata_path, "--registry", registry)
    )
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    match = re.fullmatch(
        rf"model ({UUID}) imported: onnx, semantic-segmentation, 3 classes, window dynamic, "
        rf"halo 2, sha256 {sha[:12]}\n",
        out,
    )
    assert match, out
    artifact_id = match.group(1)

    # the blob is the model file, byte for byte, named by its sha256
    blob = registry / "blobs" / f"{sha}.onnx"
    assert blob.read_bytes() == model_path.read_bytes()
    body = json.loads((registry / f"{artifact_id}.json").read_text())
    assert body["kind"] == "onnx"
    assert body["parameters"] == {
        "sha256": sha,
        "file": f"blobs/{sha}.onnx",
        "metadata": json.loads(metadata_path.read_text()),
    }
    assert body["lineage"]["source"] == {"model": "seg.onnx", "metadata": "seg.json"}
    assert body["lineage"]["mlm:name"] == json.loads(metadata_path.read_text())["mlm:name"]

    listed = succeeded(satdask("models", "list", "--registry", registry)).splitlines()
    assert len(listed) == 1
    line = listed[0]
    assert line.startswith(artifact_id)
    for part in (
        "onnx semantic-segmentation",
        "classes=water,vegetation,built",
        "window=dynamic",
        "halo=2",
        f"sha256={body['sha256'][:12]}",
    ):
        assert part in line, line


def test_the_registry_gives_back_a_model_that_scores_as_the_file_does(
    seg: tuple[Path, Path], tmp_path: Path
) -> None:
    model_path, metadata_path = seg
    registry = ModelRegistry(tmp_path / "registry")
    artifact = registry.import_onnx(model_path, metadata_path=metadata_path)
    loaded = registry.load(artifact.id)
    assert isinstance(loaded.model, OnnxModel)
    direct = OnnxModel.load(
        model_path.read_bytes(), json.loads(metadata_path.read_text()), name="seg.onnx"
    )
    assert loaded.model == direct
    batch = np.random.default_rng(0).integers(0, 10000, (1, 4, 48, 48), dtype=np.uint16)
    np.testing.assert_array_equal(loaded.model.scores(batch), direct.scores(batch))
    assert registry.load("latest").id == artifact.id


def test_a_window_classifier_and_a_second_import_share_one_blob(tmp_path: Path) -> None:
    data, metadata = window_classifier(window=64, seed=2)
    model_path, metadata_path = write_model(tmp_path, data, metadata, name="win")
    registry = tmp_path / "registry"
    args = ("models", "import", model_path, "--metadata", metadata_path, "--registry", registry)
    first, second = succeeded(satdask(*args)), succeeded(satdask(*args))
    assert "onnx, classification, 2 classes, window 64, halo 0" in first
    assert first.split()[1] != second.split()[1]  # two artifacts...
    assert len(list((registry / "blobs").iterdir())) == 1  # ...of one model file
    listed = succeeded(satdask("models", "list", "--registry", registry))
    assert listed.count("onnx classification classes=dark,bright window=64 halo=0") == 2


def test_import_through_a_stac_item(seg: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, metadata_path = seg
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "seg",
        "geometry": None,
        "properties": json.loads(metadata_path.read_text()),
        "assets": {"model": {"href": "seg.onnx", "roles": ["mlm:model"]}},
    }
    item_path = tmp_path / "item.json"
    item_path.write_text(json.dumps(item))
    artifact = ModelRegistry(tmp_path / "r").import_onnx(model_path, metadata_path=item_path)
    assert artifact.model.to_dict()["metadata"] == item


# --- bad inputs: one line, non-zero, registry unchanged --------------------------------


def _bad_metadata(metadata: dict[str, Any], case: str) -> dict[str, Any]:
    bad = copy.deepcopy(metadata)
    if case == "missing mlm:input":
        del bad["mlm:input"]
    elif case == "unknown value_scaling":
        bad["mlm:input"][0]["value_scaling"] = [{"type": "log"}]
    elif case == "halo over the window":
        bad["mlm:hyperparameters"]["satdask:halo"] = 40
    elif case == "4 classes for a graph of 3":
        bad["mlm:output"][0]["result"]["shape"][1] = 4
        bad["mlm:output"][0]["classification:classes"].append({"value": 3, "name": "snow"})
    return bad


BAD = {
    "text as .onnx": "model.onnx: not an ONNX model (",
    "missing mlm:input": "model.json: mlm:input is missing",
    "unknown value_scaling": (
        "model.json: mlm:input[0].value_scaling[0].type 'log' is not supported; "
        "supported: clip, clip-max, clip-min, min-max, offset, scale, z-score"
    ),
    "halo over the window": (
        'model.json: mlm:hyperparameters["satdask:halo"]: halo 40 px leaves nothing of a '
        "64 px window"
    ),
    "4 classes for a graph of 3": (
        "model.onnx: the model's output shape (?, 3, 64, 64) contradicts "
        "mlm:output[0].result.shape[1] (4)"
    ),
    "metadata not JSON": "model.json: not JSON (",
    "no model file": "model.onnx: No such file or directory",
}


@pytest.mark.parametrize("existing", [False, True], ids=["new registry", "existing registry"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_input_is_one_line_and_leaves_the_registry_unchanged(
    tmp_path: Path, case: str, existing: bool
) -> None:
    data, metadata = segmentation_model(window=64, seed=3)
    model_path, metadata_path = write_model(
        tmp_path, data, _bad_metadata(metadata, case), name="model"
    )
    if case == "text as .onnx":
        model_path.write_text("this is a text file, not a network\n")
    elif case == "metadata not JSON":
        metadata_path.write_text("mlm:input: [\n")
    elif case == "no model file":
        model_path.unlink()
    registry = tmp_path / "registry"
    if existing:
        good, good_meta = write_model(tmp_path, *segmentation_model(seed=4), name="good")
        ModelRegistry(registry).import_onnx(good, metadata_path=good_meta)
    before = snapshot(registry)

    line = one_line_error(
        satdask("models", "import", model_path, "--metadata", metadata_path, "--registry", registry)
    )
    assert BAD[case] in line, line
    assert snapshot(registry) == before


def test_a_tampered_blob_is_refused_at_load(seg: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, metadata_path = seg
    registry = ModelRegistry(tmp_path / "registry")
    artifact = registry.import_onnx(model_path, metadata_path=metadata_path)
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    blob = tmp_path / "registry" / "blobs" / f"{sha}.onnx"
    blob.chmod(0o600)
    tampered = bytearray(blob.read_bytes())
    tampered[-1] ^= 0xFF
    blob.write_bytes(bytes(tampered))

    expected = f"model file blobs/{sha}.onnx does not match its sha256; it was modified"
    with pytest.raises(RegistryError, match=re.escape(expected)):
        registry.load(artifact.id)
    line = one_line_error(satdask("models", "list", "--registry", tmp_path / "registry"))
    assert expected in line and f"{artifact.id}.json" in line

    # importing the same model again does not paper over the modified blob
    before = snapshot(tmp_path / "registry")
    line = one_line_error(
        satdask(
            "models", "import", model_path, "--metadata", metadata_path,
            "--registry", tmp_path / "registry",
        )
    )  # fmt: skip
    assert "model file does not match its sha256; it was modified" in line
    assert snapshot(tmp_path / "registry") == before


def test_a_missing_blob_is_named(seg: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, metadata_path = seg
    registry = ModelRegistry(tmp_path / "registry")
    artifact = registry.import_onnx(model_path, metadata_path=metadata_path)
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    (tmp_path / "registry" / "blobs" / f"{sha}.onnx").unlink()
    with pytest.raises(RegistryError, match=f"model file blobs/{sha}.onnx is missing"):
        registry.load(artifact.id)


def test_an_artifact_naming_a_file_outside_blobs_is_refused(
    seg: tuple[Path, Path], tmp_path: Path
) -> None:
    """The `file` parameter is checked even though the artifact's checksum is recomputed."""
    from satdask.io.lineage import canonical_sha256

    model_path, metadata_path = seg
    registry = ModelRegistry(tmp_path / "registry")
    artifact = registry.import_onnx(model_path, metadata_path=metadata_path)
    path = tmp_path / "registry" / f"{artifact.id}.json"
    body = json.loads(path.read_text())
    body["parameters"]["file"] = "../seg.onnx"
    body["sha256"] = canonical_sha256({k: v for k, v in body.items() if k != "sha256"})
    path.chmod(0o600)
    path.write_text(json.dumps(body))
    with pytest.raises(
        RegistryError, match=re.escape("model file '../seg.onnx' is not a blob named by")
    ):
        registry.load(artifact.id)
