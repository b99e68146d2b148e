"""Versioned, immutable, checksummed model artifacts in a directory.

Each artifact is `<uuid>.json`, written once (a hard link that fails if the name
exists) and verified on every load. `latest.json` is a symlink swapped
atomically, never a copy, so it cannot disagree with the artifact it names.

A model with a file of its own (an ONNX network) keeps it content-addressed in
`blobs/<sha256>.onnx`, written once and shared by every artifact of the same bytes;
its artifact's parameters name the file and its sha256, which every load verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from satdask._files import write_new
from satdask.core._html import artifact_html
from satdask.errors import ModelError, RegistryError
from satdask.io.lineage import canonical_sha256, file_sha256
from satdask.models.base import Model, TileModel
from satdask.models.kinds import model_from_dict
from satdask.models.onnx import OnnxModel
from satdask.models.s2cloudless import CloudMaskModel

SCHEMA_VERSION = 1
LATEST = "latest"
_REQUIRED = ("schema_version", "id", "kind", "created_at", "parameters", "lineage", "sha256")
_TYPES: dict[str, type] = {
    "id": str,
    "kind": str,
    "created_at": str,
    "parameters": dict,
    "lineage": dict,
}
BLOBS = "blobs"
# The only names a `file` parameter may hold: a blob named by its own sha256.
_BLOB_NAME = re.compile(r"blobs/([0-9a-f]{64})\.onnx")


@dataclass(frozen=True)
class ModelArtifact:
    """A loaded, verified model and the facts that trace it."""

    id: str
    sha256: str
    created_at: str
    uri: str
    model: Model
    lineage: Mapping[str, Any]

    def describe(self) -> dict[str, Any]:
        """The run record's `model`: the artifact's sha256 covers its parameters; an
        ONNX model's own file is named by `file_sha256` too, as `models import` printed it."""
        info: dict[str, Any] = {"id": self.id, "sha256": self.sha256, "uri": self.uri}
        if isinstance(self.model, OnnxModel | CloudMaskModel):
            info["file_sha256"] = self.model.sha256
        return info

    def to_dict(self) -> dict[str, Any]:
        """The artifact's facts as plain data: what its HTML view draws."""
        return {
            "id": self.id,
            "kind": self.model.kind,
            "created_at": self.created_at,
            "sha256": self.sha256,
            "uri": self.uri,
            "parameters": self.model.to_dict(),
            "lineage": dict(self.lineage),
        }

    def __repr__(self) -> str:
        """One line: id, parameters, what it was trained on, and where it is."""
        params = {k: v for k, v in self.model.to_dict().items() if isinstance(v, int | float)}
        shown = "".join(
            f", {k}={v:.6g}" if isinstance(v, float) else f", {k}={v}" for k, v in params.items()
        )
        tiles, n = self.lineage.get("tile_count"), len(self.lineage.get("scenes") or [])
        trained = (
            f"trained on {tiles} tiles of {n} scene{'s' * (n != 1)}"
            if tiles is not None
            else "no training lineage"
        )
        return f"<ModelArtifact {self.id}: {self.model.kind} model{shown}, {trained}; {self.uri}>"

    def _repr_html_(self) -> str:
        return artifact_html(self.to_dict())


class ModelRegistry:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise RegistryError(f"{self.directory}: registry path exists and is not a directory")

    def __repr__(self) -> str:
        """The directory, how many artifacts it holds and which is latest; never raises."""
        try:
            count = sum(1 for p in self.directory.glob("*.json") if not p.is_symlink())
            latest = os.readlink(self.directory / f"{LATEST}.json") if count else ""
        except OSError:
            count, latest = 0, ""
        if not count:
            return f"<ModelRegistry {self.directory}: no models yet>"
        named = f", latest {Path(latest).stem}" if latest else ""
        return f"<ModelRegistry {self.directory}: {count} model{'s' * (count != 1)}{named}>"

    def check_writable(self) -> None:
        """Fail before training, not after, when a new artifact could not be saved here."""
        existing = self.directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise RegistryError(
                f"{existing}: exists and is not a directory; cannot create registry"
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise RegistryError(f"{existing}: registry directory is not writable")

    def save(self, model: TileModel) -> ModelArtifact:
        """Write a new version; an identical model still gets its own id."""
        self.check_writable()
        self._create()
        return self._write(model.kind, model.to_dict(), model.lineage)

    def import_onnx(
        self, model_path: str | os.PathLike[str], *, metadata_path: str | os.PathLike[str]
    ) -> ModelArtifact:
        """Validate an ONNX model against its STAC MLM metadata, then register it.

        Nothing is written unless the model loads, its graph agrees with the metadata
        and a zero batch gives the output shape the metadata states. The model file is
        copied to `blobs/<sha256>.onnx` (kept if it is already there); the artifact's
        parameters hold its sha256, that file name and the MLM JSON as given.
        """
        model_file, metadata_file = Path(model_path), Path(metadata_path)
        model_bytes = _read(model_file)
        try:
            metadata = json.loads(_read(metadata_file))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(
                f"{metadata_file.name}: not JSON ({exc})", uri=str(metadata_file)
            ) from None
        model = OnnxModel.load(
            model_bytes, metadata, name=model_file.name, metadata_name=metadata_file.name
        )
        self.check_writable()
        self._create()
        blob = f"{BLOBS}/{model.sha256}.onnx"
        self._write_blob(self.directory / blob, model_bytes, model.sha256)
        lineage = {
            **model.spec.extra,
            "source": {"model": model_file.name, "metadata": metadata_file.name},
        }
        return self._write(model.kind, {**model.to_dict(), "file": blob}, lineage)

    def import_s2cloudless(
        self, *, threshold: float = 0.4, average_over: int = 1, dilation_size: int = 1
    ) -> ModelArtifact:
        """Register the cloud detector the installed s2cloudless ships, with its parameters.

        Its LightGBM file stays in the s2cloudless package (CC BY-SA 4.0); the artifact
        holds the file's sha256, which every load checks, and the package's version.
        """
        model = CloudMaskModel.installed(
            threshold=threshold, average_over=average_over, dilation_size=dilation_size
        )
        self.check_writable()
        self._create()
        lineage = {
            "source": {
                "package": "s2cloudless",
                "version": model.version,
                "file": model.to_dict()["model_file"],
                "license": "CC BY-SA 4.0",
            }
        }
        return self._write(model.kind, model.to_dict(), lineage)

    def _create(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(
                f"{self.directory}: cannot create registry ({exc.strerror})"
            ) from None

    def _write_blob(self, path: Path, data: bytes, sha256: str) -> None:
        """Write a content-addressed file once; an existing one must hold the same bytes."""
        path.parent.mkdir(exist_ok=True)
        try:
            write_new(path, data)
        except FileExistsError:
            if file_sha256(path) != sha256:
                raise RegistryError(
                    f"{path}: model file does not match its sha256; it was modified"
                ) from None

    def _write(
        self, kind: str, parameters: Mapping[str, Any], lineage: Mapping[str, Any]
    ) -> ModelArtifact:
        artifact_id = str(uuid.uuid4())
        body = {
            "schema_version": SCHEMA_VERSION,
            "id": artifact_id,
            "kind": kind,
            "created_at": datetime.now(UTC).isoformat(),
            "parameters": dict(parameters),
            "lineage": dict(lineage),
        }
        body["sha256"] = canonical_sha256(body)
        path = self.directory / f"{artifact_id}.json"
        try:
            write_new(path, json.dumps(body, indent=2, sort_keys=True).encode() + b"\n")
        except FileExistsError:
            raise RegistryError(f"{path}: artifact exists; artifacts are write-once") from None
        self._point_latest(path.name)
        return self._verified(path, body)

    def load(self, ref: str = LATEST) -> ModelArtifact:
        """Load by id or `latest`, refusing any artifact whose checksum fails."""
        path = self._path(ref)
        try:
            body = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise RegistryError(f"{path}: no such model artifact") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{path}: malformed model artifact ({exc})") from None
        return self._verified(path, body)

    def list(self) -> list[ModelArtifact]:
        """Every valid artifact, oldest first (broken ones raise, never hide)."""
        self._check_exists()
        paths = [p for p in self.directory.glob("*.json") if not p.is_symlink()]
        return sorted((self.load(p.stem) for p in paths), key=lambda a: (a.created_at, a.id))

    def _check_exists(self) -> None:
        """A mistyped registry path must not read as an empty registry."""
        if not self.directory.is_dir():
            raise RegistryError(f"{self.directory}: registry does not exist")

    def _path(self, ref: str) -> Path:
        self._check_exists()
        if ref == LATEST:
            path = self.directory / f"{LATEST}.json"
            if not path.exists():
                raise RegistryError(f"{self.directory}: registry has no model yet")
            return path.resolve()
        try:
            uuid.UUID(ref)
        except ValueError:
            raise RegistryError(f"{self.directory}: {ref!r} is not a model id") from None
        return self.directory / f"{ref}.json"

    def _verified(self, path: Path, body: Any) -> ModelArtifact:
        if not isinstance(body, dict):
            raise RegistryError(f"{path}: malformed model artifact (not a JSON object)")
        missing = [k for k in _REQUIRED if k not in body]
        if missing:
            raise RegistryError(f"{path}: malformed model artifact (missing {', '.join(missing)})")
        if body["schema_version"] != SCHEMA_VERSION:
            raise RegistryError(
                f"{path}: schema_version {body['schema_version']!r} is not supported "
                f"(expected {SCHEMA_VERSION})"
            )
        content = {k: v for k, v in body.items() if k != "sha256"}
        if canonical_sha256(content) != body["sha256"]:
            raise RegistryError(f"{path}: checksum mismatch; the artifact was modified")
        for key, kind in _TYPES.items():
            if not isinstance(body[key], kind):
                raise RegistryError(
                    f"{path}: malformed model artifact ({key} must be a {kind.__name__}, "
                    f"got {type(body[key]).__name__})"
                )
        if body["id"] != path.stem:  # a copy under another name would answer to both ids
            raise RegistryError(f"{path}: artifact id {body['id']!r} does not match its file name")
        try:
            model = self._model(path, body)
        except ModelError as exc:
            raise RegistryError(f"{path}: {exc}") from None
        return ModelArtifact(
            id=body["id"],
            sha256=body["sha256"],
            created_at=body["created_at"],
            uri=str(path.resolve()),
            model=model,
            lineage=body["lineage"],
        )

    def _model(self, path: Path, body: Mapping[str, Any]) -> Model:
        """The artifact's model; a model with a file of its own is built from that file."""
        kind, params, lineage = body["kind"], body["parameters"], body["lineage"]
        if "file" not in params:
            return model_from_dict(kind, params, lineage=lineage)
        name = params["file"]
        match = _BLOB_NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None or params.get("sha256") != match.group(1):
            raise RegistryError(f"{path}: model file {name!r} is not a blob named by its sha256")
        try:
            data = (self.directory / name).read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"{path}: model file {name} is missing") from None
        except OSError as exc:
            raise RegistryError(f"{path}: model file {name}: {exc.strerror}") from None
        if hashlib.sha256(data).hexdigest() != match.group(1):
            raise RegistryError(
                f"{path}: model file {name} does not match its sha256; it was modified"
            )
        if kind != OnnxModel.kind:
            raise RegistryError(f"{path}: a {kind!r} model has no model file")
        return OnnxModel.from_dict(params, data, lineage=lineage)

    def _point_latest(self, target: str) -> None:
        link = self.directory / f"{LATEST}.json"
        tmp = self.directory / f".{LATEST}.{uuid.uuid4().hex}"
        os.symlink(target, tmp)
        os.replace(tmp, link)


def parse_model_ref(ref: str) -> tuple[str, str]:
    """'DIR[:ID]' -> (DIR, ID or 'latest'); a DIR containing ':' that exists wins."""
    if os.path.isdir(ref) or ":" not in ref:
        return ref, LATEST
    directory, _, artifact = ref.rpartition(":")
    return directory, artifact or LATEST


def canonical_model_sha256(model: Model) -> str:
    """Hash of an unregistered model's parameters, for lineage of ad-hoc runs."""
    return canonical_sha256({"kind": model.kind, "parameters": model.to_dict()})


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise RegistryError(f"{path}: is a directory, not a file", uri=str(path)) from None
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror}", uri=str(path)) from None
