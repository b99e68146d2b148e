"""Scenes opened lazily, once, and kept in a bounded cache keyed by relative path.

`open_scene` builds coordinates and probes the file, so it must not run per request.
An entry remembers the file's (size, mtime) and is reopened when they change; a
file that cannot be opened is remembered too (with its error, which names the file by
the client's path), so a bad file is not reprobed on every request. Entries hold no
GDAL handle: `read_tile` keeps one handle per thread, as GDAL requires.

Under a remote root (`service.remote`) there is nothing to stat without a request, so
remote files are taken as immutable, as COGs in object storage are: an opened scene is
kept until evicted, and only opened scenes are kept. A failed look is asked again next
time, so a scene uploaded after a client asked for it is found, and a store that did not
answer once is not remembered as broken.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from satdask.core.grid import TileGrid
from satdask.errors import GridError, SatdaskError, SceneError
from satdask.io.registry import ModelArtifact
from satdask.io.source import PixelSource
from satdask.models.base import describe_inputs, input_mismatches
from satdask.views.scene import open_scene, scene_nodata, scene_source
from satdask.views.tiles import scene_grid
from service.errors import NotFoundError
from service.paths import is_tiff, resolve_under
from service.public import client_error
from service.remote import RemoteRoot, look, remote_error, store_failure

REMOTE_STAMP = (0, 0)  # what RasterSource uses for a URL, too


@dataclass(frozen=True)
class OpenScene:
    """A scene from `open_scene`, its tile grid under the service's policy, and facts."""

    path: str  # relative to the data root
    scene: xr.DataArray
    grid: TileGrid
    nodata: float | None
    crs: str
    dtype: str
    bands: int
    stamp: tuple[int, int]
    source: PixelSource  # the file and bands behind `scene`, built once (see Runtime.read)

    @property
    def height(self) -> int:
        return self.grid.height

    @property
    def width(self) -> int:
        return self.grid.width


class ModelMismatchError(SceneError):
    """A scene unlike those the loaded model was trained on: what batch refuses too."""


def check_model(artifact: ModelArtifact, opened: OpenScene, *, tile_size: int, allow: bool) -> None:
    """Refuse a scene whose bands, dtype or tile size differ from the model's training.

    The same comparison and words as batch (`satdask.models.base.input_mismatches`), so
    the service cannot answer a request that a batch run over the scene would refuse.
    """
    trained = (artifact.model.lineage or {}).get("config") or {}
    bands, dtype = opened.bands, opened.dtype
    mismatch = input_mismatches(trained, bands=bands, dtype=dtype, tile_size=tile_size)
    if mismatch and not allow:
        was = describe_inputs(
            len(trained.get("bands", [])), trained.get("dtype"), trained.get("tile_size")
        )
        raise ModelMismatchError(
            f"{opened.path}: model {artifact.id} was trained on {was}, this scene has "
            f"{describe_inputs(bands, dtype, tile_size)} ({'; '.join(mismatch)}); serve a "
            "model trained on such scenes, or set SATDASK_ALLOW_MODEL_MISMATCH=true"
        )


@dataclass(frozen=True)
class _Entry:
    stamp: tuple[int, int]
    scene: OpenScene | None
    error: SatdaskError | None


class SceneStore:
    def __init__(
        self,
        root: Path | RemoteRoot,
        *,
        tile_size: int,
        edge: str,
        capacity: int,
        on_open: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.tile_size = tile_size
        self.edge = edge
        self.capacity = capacity
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.opened = 0  # scenes opened since start (for tests and metrics)
        # Told the outcome (one of service.metrics.OPEN_OUTCOMES) of every file looked at
        # after `resolve_under`. Nothing else in the service opens a file from a client's
        # path (tile reads reopen only scenes counted "ok"), so a count that does not move
        # proves that the requests meanwhile opened nothing.
        self._on_open = on_open

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: object) -> OpenScene:
        """The open scene at a client's relative path; NotFoundError or the open error."""
        if isinstance(self.root, RemoteRoot):
            return self._get_remote(self.root, text)
        rel, real, st = resolve_under(self.root, text)
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            entry = self._entries.get(rel)
            if entry is not None and entry.stamp == stamp:
                self._entries.move_to_end(rel)
        if entry is None or entry.stamp != stamp:
            entry = self._open(rel, real, stamp)
            with self._lock:
                self._entries[rel] = entry
                self._entries.move_to_end(rel)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        if entry.error is not None:
            raise entry.error
        assert entry.scene is not None
        return entry.scene

    def forget(self, rel: str) -> None:
        """Drop a scene whose remote file turned out to be gone, so it is looked at again."""
        with self._lock:
            self._entries.pop(rel, None)

    def _get_remote(self, root: RemoteRoot, text: object) -> OpenScene:
        rel, url = root.join(text)  # NotFoundError before any request
        with self._lock:
            entry = self._entries.get(rel)
            if entry is not None:
                self._entries.move_to_end(rel)
        if entry is None:
            self.opened += 1
            outcome, opened, error = self._load_remote(root, rel, url)
            if self._on_open is not None:
                self._on_open(outcome)
            if error is not None:
                raise error
            assert opened is not None
            entry = _Entry(REMOTE_STAMP, opened, None)
            with self._lock:
                self._entries[rel] = entry
                self._entries.move_to_end(rel)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        assert entry.scene is not None
        return entry.scene

    def _load_remote(
        self, root: RemoteRoot, rel: str, url: str
    ) -> tuple[str, OpenScene | None, SatdaskError | None]:
        """(outcome, scene, error): a look (GTiff only, uncached), then `open_scene`."""
        failed = look(root, url)
        if failed is not None:
            failure, message = failed
            return failure, None, remote_error(rel, url, failure, message)
        try:
            return "ok", self._scene(rel, url, REMOTE_STAMP), None
        except SatdaskError as exc:
            # The look found a TIFF: a scene check (no CRS, ...) fails on the file itself,
            # while GDAL failing now means the store stopped answering in between.
            lost = store_failure(str(exc), url) if type(exc) is SceneError else None
            if lost is not None:
                return lost, None, remote_error(rel, url, lost, str(exc))
            return "unreadable", None, client_error(exc, rel)

    def _open(self, rel: str, real: Path, stamp: tuple[int, int]) -> _Entry:
        self.opened += 1
        outcome, entry = self._load(rel, real, stamp)
        if self._on_open is not None:
            self._on_open(outcome)
        return entry

    def _load(self, rel: str, real: Path, stamp: tuple[int, int]) -> tuple[str, _Entry]:
        if stamp[0] == 0:
            return "empty", _Entry(stamp, None, SceneError(f"{rel}: file is empty"))
        if not is_tiff(real):
            error = SceneError(f"{rel}: not a readable raster (not a TIFF)")
            return "not_tiff", _Entry(stamp, None, error)
        try:
            opened = self._scene(rel, real, stamp)
        except NotFoundError:
            raise
        except SatdaskError as exc:
            return "unreadable", _Entry(stamp, None, client_error(exc, rel))
        return "ok", _Entry(stamp, opened, None)

    def _scene(self, rel: str, target: Path | str, stamp: tuple[int, int]) -> OpenScene:
        """`open_scene` on a file or URL, with the tile grid under the service's policy."""
        scene = open_scene(target, tile_size=self.tile_size)
        try:
            grid = scene_grid(scene, edge=self.edge)  # type: ignore[arg-type]
        except GridError:  # no full tile under 'skip': an empty grid, every tile is 404
            grid = TileGrid(
                scene.sizes["y"],
                scene.sizes["x"],
                scene.rio.transform(recalc=False),
                self.tile_size,
                self.edge,  # type: ignore[arg-type]
            )
        crs = scene.rio.crs
        return OpenScene(
            path=rel,
            scene=scene,
            grid=grid,
            nodata=scene_nodata(scene),
            crs=crs.to_string() if crs else "",
            dtype=str(np.dtype(scene.dtype)),
            bands=int(scene.sizes["band"]),
            stamp=stamp,
            source=scene_source(scene),
        )
