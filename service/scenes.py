"""Scenes opened lazily, once, by descriptor, and kept in a bounded cache by relative path.

A local file is opened once (`service.paths.open_under`: by descriptor, under the root's),
and everything after goes through that descriptor: its TIFF header is read from it and
checked against the file limits (`service.limits`) before GDAL sees the file, then GDAL
reads it as `/proc/self/fd/N`, for the metadata and on every reader thread. No name is
looked up again, so a name swapped for a symlink after the check changes nothing. The
descriptor stays open while the scene is cached or a request holds it.

An entry is valid while the file at the client's path is the same (device, inode, size,
mtime): each request opens the path anew (a few microseconds) and compares. A file that
cannot be served is remembered too (with its error, which names the file by the client's
path), so a bad file is not reprobed on every request. Scenes are built from the header
and GDAL's metadata, without the coordinate arrays of a scene view: a scene costs the same
whatever size it claims. Entries hold no GDAL handle: `RasterSource.read` keeps one per
thread, as GDAL requires.

Under a remote root (`service.remote`) there is nothing to stat without a request, so
remote files are taken as immutable, as COGs in object storage are: an opened scene is
kept until evicted, and only opened scenes are kept. A failed look is asked again next
time, so a scene uploaded after a client asked for it is found, and a store that did not
answer once is not remembered as broken. A remote scene gets the size limits, not the
block limits, which need its header's bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from satdask.core.grid import TileGrid, check_edge
from satdask.errors import SatdaskError, SceneError
from satdask.io.geotiff import RasterSource, probe_uri
from satdask.io.registry import ModelArtifact
from satdask.io.source import PixelSource, check_scene, default_bands
from satdask.models.base import describe_inputs, input_mismatches
from service.errors import NotFoundError, RasterTooLargeError
from service.files import Directory, OpenFile
from service.limits import FileLimits
from service.paths import open_under
from service.public import client_error
from service.remote import RemoteRoot, look, remote_error, store_failure
from service.tiff import Layout, NotTiffError, TiffHeaderError, read_layout

REMOTE_STAMP = (0, 0)  # what RasterSource uses for a URL, too


@dataclass(frozen=True)
class OpenScene:
    """A scene's tile grid under the service's policy, the source to read it, and facts."""

    path: str  # relative to the data root
    grid: TileGrid
    nodata: float | None
    crs: str
    dtype: str
    bands: int
    stamp: tuple[int, ...]  # (device, inode, size, mtime) of a local file
    source: PixelSource  # the file's data bands (an alpha band is its mask), built once
    file: OpenFile | None = None  # a local file's descriptor, open while this is alive
    layout: Layout | None = None  # a local file's TIFF header

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
    stamp: tuple[int, ...]
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
        limits: FileLimits | None = None,
    ) -> None:
        self.root = root
        self.tile_size = tile_size
        self.edge = edge
        self.capacity = capacity
        self.limits = limits or FileLimits()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._directory: Directory | None = None
        self.opened = 0  # scenes opened since start (for tests and metrics)
        # Told the outcome (one of service.metrics.OPEN_OUTCOMES) of every file looked at
        # after `open_under`. Nothing else in the service opens a file from a client's
        # path (tile reads reopen only scenes counted "ok", by descriptor), so a count that
        # does not move proves that the requests meanwhile opened nothing.
        self._on_open = on_open

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: object) -> OpenScene:
        """The open scene at a client's relative path; NotFoundError or the open error."""
        if isinstance(self.root, RemoteRoot):
            return self._get_remote(self.root, text)
        rel, file = open_under(self._root_directory(), text, hard_links=self.limits.hard_links)
        stamp = file.stamp
        with self._lock:
            entry = self._entries.get(rel)
            if entry is not None and entry.stamp == stamp:
                self._entries.move_to_end(rel)
        if entry is not None and entry.stamp == stamp:
            file.close()  # the cached scene holds a descriptor of this same file
        else:
            entry = self._open(rel, file, stamp)
            with self._lock:
                self._entries[rel] = entry
                self._entries.move_to_end(rel)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        if entry.error is not None:
            raise entry.error
        assert entry.scene is not None
        return entry.scene

    def check_whole(self, opened: OpenScene) -> None:
        """Refuse a read of the whole raster (`tile_path`) that decompresses too much."""
        if opened.layout is not None:
            problem = self.limits.whole(opened.path, opened.layout)
            if problem is not None:
                raise RasterTooLargeError(problem)

    def _root_directory(self) -> Directory:
        """The data root's descriptor, opened at the first request."""
        assert isinstance(self.root, Path)
        with self._lock:
            if self._directory is None:
                try:
                    self._directory = Directory(self.root)
                except OSError:
                    raise NotFoundError from None
            return self._directory

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

    def _open(self, rel: str, file: OpenFile, stamp: tuple[int, ...]) -> _Entry:
        self.opened += 1
        outcome, entry = self._load(rel, file, stamp)
        if entry.scene is None:
            file.close()
        if self._on_open is not None:
            self._on_open(outcome)
        return entry

    def _load(self, rel: str, file: OpenFile, stamp: tuple[int, ...]) -> tuple[str, _Entry]:
        """(outcome, entry): the header from the descriptor, the limits, then GDAL."""
        if file.stat.st_size == 0:
            return "empty", _Entry(stamp, None, SceneError(f"{rel}: file is empty"))
        try:
            layout = read_layout(file.pread)
        except NotTiffError:
            error = SceneError(f"{rel}: not a readable raster (not a TIFF)")
            return "not_tiff", _Entry(stamp, None, error)
        except (TiffHeaderError, OSError) as exc:
            error = SceneError(f"{rel}: not a readable raster (TIFF header: {exc})")
            return "unreadable", _Entry(stamp, None, error)
        refused = self.limits.layout(rel, layout, tile_size=self.tile_size)
        if refused is not None:
            return "unreadable", _Entry(stamp, None, SceneError(refused))
        try:
            opened = self._scene(rel, file.path, stamp, file=file, layout=layout)
        except SatdaskError as exc:
            return "unreadable", _Entry(stamp, None, client_error(exc, rel))
        return "ok", _Entry(stamp, opened, None)

    def _scene(
        self,
        rel: str,
        uri: str,
        stamp: tuple[int, ...],
        *,
        file: OpenFile | None = None,
        layout: Layout | None = None,
    ) -> OpenScene:
        """GDAL's metadata of `uri` as is (never resolved), checked as batch checks it
        (with the service's size limits), and the tile grid under the service's policy."""
        info = probe_uri(uri)
        if layout is not None and (info.width, info.height, info.count) != (
            layout.width,
            layout.height,
            layout.bands,
        ):
            raise SceneError(f"{rel}: not a readable raster (its TIFF header and GDAL disagree)")
        refused = self.limits.size(rel, info.height, info.width)
        if refused is not None:
            raise SceneError(refused)
        check_scene(info, max_side=self.limits.max_side, max_pixels=self.limits.max_pixels)
        bands = default_bands(info)  # an alpha band is the mask, as in batch
        # under 'skip' a scene smaller than a tile has an empty grid: every tile is 404
        grid = TileGrid(
            info.height, info.width, info.transform, self.tile_size, check_edge(self.edge)
        )
        return OpenScene(
            path=rel,
            grid=grid,
            nodata=None if info.nodata is None else float(info.nodata),
            crs=info.crs.to_string() if info.crs else "",
            dtype=info.dtype,
            bands=len(bands),
            stamp=stamp,
            source=RasterSource(uri, bands, stamp),
            file=file,
            layout=layout,
        )
