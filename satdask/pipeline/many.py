"""Many scenes, one model, one cluster: a run store per scene and a manifest of them all.

Every scene is opened and validated first, so one that fails is reported and
skipped before any work, and the progress bar knows the whole run's blocks. A
scene that fails while running is recorded too; the others finish. The
manifest, written last and atomically, says which scenes made which store and
which failed and why.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from satdask._progress import ProgressBar
from satdask._uri import is_url
from satdask.core.grid import EdgePolicy
from satdask.core.health import HealthPolicy
from satdask.errors import RunError, SatdaskError
from satdask.io.registry import ModelArtifact
from satdask.io.stac import expand_collections
from satdask.io.store import read_attrs
from satdask.models.base import TileModel
from satdask.pipeline._cluster import check_scheduler, compute_client
from satdask.pipeline.batch import run_batch
from satdask.views.checks import validate
from satdask.views.scene import SceneLike, as_scene
from satdask.views.tiles import scene_blocks

if TYPE_CHECKING:
    from distributed import Client

MANIFEST = "manifest.json"
log = logging.getLogger("satdask.manifest")


@dataclass(frozen=True)
class SceneOutcome:
    """One scene of a many-scene run: its store, or why it has none."""

    scene: str
    store: str | None  # None when the scene failed
    status: str  # "complete", "kept" (a complete store reused by --resume) or "failed"
    run_id: str | None = None
    counts: Mapping[str, int] | None = None
    health: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Manifest:
    path: Path
    scenes: Sequence[SceneOutcome]

    @property
    def failed(self) -> list[SceneOutcome]:
        return [s for s in self.scenes if s.status == "failed"]


def store_names(labels: Sequence[str]) -> list[str]:
    """`<stem>.zarr` per scene; a repeated stem gets `-2`, `-3`... in input order."""
    stems = [Path(s.rstrip("/").split("?")[0]).stem or "scene" for s in labels]
    seen: Counter[str] = Counter()
    names = []
    for stem in stems:
        seen[stem] += 1
        names.append(f"{stem}.zarr" if seen[stem] == 1 else f"{stem}-{seen[stem]}.zarr")
    return names


def run_many(
    scenes: Sequence[SceneLike | Any],
    model: ModelArtifact | TileModel,
    out_dir: str | os.PathLike[str],
    *,
    client: Client | None = None,
    scheduler: str = "local",
    tile_size: int = 256,
    tiles_per_chunk: int | None = None,
    edge: EdgePolicy = "skip",
    bands: Sequence[int] | None = None,
    allow_model_mismatch: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
    policy: HealthPolicy | None = None,
) -> Manifest:
    """Run `run_batch` on every scene into `out_dir/<stem>.zarr`, then write the manifest.

    `scenes` are paths, URLs, STAC items (or item-collection JSON, expanded) or
    scenes from `open_scene`. With `resume`, a scene whose store is already
    complete is kept as it is, and a killed one continues from its journal.
    """
    if is_url(out_dir):
        raise RunError(f"{out_dir}: several scenes are written to a local directory, not a URL")
    out_dir = Path(out_dir)
    check_scheduler(client or scheduler)
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists() and not (overwrite or resume):
        raise RunError(f"{manifest_path}: already exists; pass --overwrite or --resume")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"{out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)

    scenes = expand_collections(scenes)
    uris = [_label(s) for s in scenes]
    names = store_names(uris)
    outcomes: dict[int, SceneOutcome] = {}
    todo: dict[int, Any] = {}
    blocks = 0
    for i, (scene, uri) in enumerate(zip(scenes, uris, strict=True)):
        store = str(out_dir / names[i])
        if resume and _complete(store):
            outcomes[i] = _outcome(uri, store, read_attrs(store), status="kept")
            continue
        try:
            opened = as_scene(
                scene, tile_size=tile_size, tiles_per_chunk=tiles_per_chunk, bands=bands
            )
            validate(opened, tile_size=tile_size, edge=edge)
            blocks += len(scene_blocks(opened, edge=edge)[1])
        except SatdaskError as exc:
            log.warning("skipping %s: %s", uri, exc)
            outcomes[i] = SceneOutcome(uri, None, "failed", error=str(exc))
            continue
        todo[i] = opened

    bar = ProgressBar(blocks) if progress and blocks else None
    with compute_client(client or scheduler) if todo else nullcontext() as active:
        for i, opened in todo.items():
            store = str(out_dir / names[i])
            try:
                result = run_batch(
                    opened,
                    model,
                    store,
                    client=active,
                    scheduler="threads",  # used only when active is None: threads asked for
                    edge=edge,
                    allow_model_mismatch=allow_model_mismatch,
                    overwrite=overwrite,
                    resume=resume,
                    progress=bar or False,
                    policy=policy,
                )
            except SatdaskError as exc:
                log.warning("scene %s failed: %s", uris[i], exc)
                outcomes[i] = SceneOutcome(uris[i], None, "failed", error=str(exc))
                continue
            outcomes[i] = _outcome(uris[i], store, result.attrs, status="complete")

    ordered = [outcomes[i] for i in range(len(scenes))]
    model_id = model.id if isinstance(model, ModelArtifact) else None
    _write_manifest(manifest_path, ordered, model_id=model_id)
    return Manifest(manifest_path, ordered)


def _label(scene: SceneLike | Any) -> str:
    """A path or URL as given; a scene's source; a STAC item's id."""
    if isinstance(scene, str | os.PathLike):
        return os.fspath(scene)
    if isinstance(scene, xr.DataArray):
        return str(scene.attrs.get("source", "scene"))
    return str(getattr(scene, "id", scene))


def _complete(store: str) -> bool:
    try:
        read_attrs(store)
    except SatdaskError:
        return False
    return True


def _outcome(uri: str, store: str, attrs: Mapping[str, Any], *, status: str) -> SceneOutcome:
    return SceneOutcome(
        uri,
        store,
        status,
        run_id=attrs["run_id"],
        counts=attrs["counts"],
        health=attrs["health"]["status"],
    )


def _write_manifest(path: Path, outcomes: Sequence[SceneOutcome], *, model_id: str | None) -> None:
    body = {
        "created_at": datetime.now(UTC).isoformat(),
        "model_id": model_id,
        "scenes": [asdict(o) for o in outcomes],
        "failed": sum(o.status == "failed" for o in outcomes),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(tmp, path)
