"""`GET /scenes`: the rasters under a local data root, walked under bounds, cached, on a
thread of its own.

A walk of a large tree used to run on the reader threads, so tiles queued behind it (on a
root of 120,000 entries, six listings delayed a tile by 19.5 s). Now:

- a walk stops at the first bound it meets: `max_entries` directory entries looked at,
  folders deeper than `max_depth`, `seconds` spent, or `max_scenes` rasters found. The
  answer then says `truncated` and which bound (`reason`: entries, depth, time, scenes);
- it runs on the listing's own thread, never on a reader thread, so tile reads go on
  while it runs;
- one walk at a time: callers arriving meanwhile wait for that walk, and for
  `cache_seconds` after a walk began its answer is served as it is. A raster added since
  shows up at the first walk after that.

A file is listed if `service.paths.resolve_under` accepts its path, so the listing names
exactly what a request may name; folders are not entered through symlinks, and hidden
names (leading `.`) are skipped. Directory entries are taken in the order the file
system gives them (sorting a folder would mean reading all of it first); the answer is
sorted.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from service.errors import NotFoundError
from service.paths import resolve_under

if TYPE_CHECKING:
    from service.metrics import Metrics

REASONS = ("scenes", "entries", "depth", "time")


@dataclass(frozen=True)
class Bounds:
    max_scenes: int
    max_entries: int
    max_depth: int
    seconds: float


@dataclass(frozen=True)
class Listing:
    scenes: list[str]
    reason: str | None  # the bound that cut the walk short (one of REASONS), or None

    @property
    def truncated(self) -> bool:
        return self.reason is not None


def walk_rasters(root: Path, bounds: Bounds) -> Listing:
    """The rasters under `root` that `resolve_under` accepts, within `bounds`."""
    deadline = time.monotonic() + bounds.seconds
    found: list[str] = []
    looked = 0
    reason: str | None = None
    deeper = False
    pending: list[tuple[str, int]] = [("", 0)]  # (folder relative to root, its depth)
    while pending and reason is None:
        folder, depth = pending.pop()
        try:
            entries = os.scandir(os.path.join(root, folder))
        except OSError:
            continue
        with entries:
            for entry in entries:
                looked += 1
                if looked > bounds.max_entries:
                    reason = "entries"
                elif time.monotonic() > deadline:
                    reason = "time"
                if reason is not None:
                    break
                if entry.name.startswith("."):
                    continue
                rel = f"{folder}/{entry.name}" if folder else entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    if depth + 1 > bounds.max_depth:
                        deeper = True
                    else:
                        pending.append((rel, depth + 1))
                elif _accepted(root, rel):
                    if len(found) >= bounds.max_scenes:
                        reason = "scenes"
                        break
                    found.append(rel)
    if reason is None and deeper:
        reason = "depth"
    return Listing(sorted(found), reason)


def _accepted(root: Path, rel: str) -> bool:
    try:
        resolve_under(root, rel)
    except NotFoundError:
        return False
    return True


class SceneListing:
    """Walks of one data root: one at a time, on their own thread, cached for a while."""

    def __init__(
        self, root: Path, bounds: Bounds, *, cache_seconds: float, metrics: Metrics | None = None
    ) -> None:
        self.root = root
        self.bounds = bounds
        self.cache_seconds = cache_seconds
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="satdask-list")
        self._cached: tuple[float, Listing] | None = None  # (when its walk began, answer)
        self._walk: asyncio.Future[Listing] | None = None

    async def get(self) -> Listing:
        """The cached answer if fresh, else the walk under way, else a new walk's answer."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            self._count("cache")
            return cached[1]
        if self._walk is None:
            self._count("walk")
            began = time.monotonic()
            loop = asyncio.get_running_loop()
            self._walk = loop.run_in_executor(self._executor, self._run)
            self._walk.add_done_callback(partial(self._done, began))
        else:
            self._count("shared")
        # shielded: a client that goes away does not cancel the walk others wait for
        return await asyncio.shield(self._walk)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> Listing:
        gauge = self.metrics.listing_in_flight if self.metrics is not None else None
        if gauge is not None:
            gauge.set(1)
        try:
            return walk_rasters(self.root, self.bounds)
        finally:
            if gauge is not None:
                gauge.set(0)

    def _done(self, began: float, future: asyncio.Future[Listing]) -> None:
        self._walk = None
        if not future.cancelled() and future.exception() is None:
            self._cached = (began, future.result())

    def _count(self, source: str) -> None:
        if self.metrics is not None:
            self.metrics.listings.labels(source).inc()
