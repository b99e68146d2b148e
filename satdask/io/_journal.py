"""A run's journal: finished blocks made durable as they arrive, so a killed run resumes.

It lives beside the destination, as `.NAME.partial/`:

- `run.json`: the run id and the fingerprint (scene, model, config, block layout)
  that a resume must match;
- `lock`: held with flock for as long as a run writes here. The kernel drops it
  when the process dies, so a crashed run's journal is free to resume while a
  running one is refused;
- `segments/NNNNNN.npz`: the results of the blocks finished since the last flush,
  each written to a temporary name, fsynced and renamed. A block is done only
  when a segment holds it: Zarr fill values cannot tell an unwritten chunk from
  one written as fill.

The run store is staged inside the journal and moved out when complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from time import monotonic
from typing import Any

import numpy as np

from satdask.errors import RunError
from satdask.io.lineage import cache_dir

# A killed run loses at most FLUSH_SECONDS of finished work. A flush costs about a
# millisecond (two fsyncs), so with many small blocks it waits for FLUSH_BLOCKS of them
# and happens at most every FLUSH_MIN_SECONDS.
FLUSH_SECONDS = 1.0
FLUSH_BLOCKS = 16
FLUSH_MIN_SECONDS = 0.1

Record = tuple[dict[str, np.ndarray], dict[str, Any]]  # a block's arrays and its metadata


def journal_path(out: Path | str) -> Path:
    """Beside a local destination; for a URL, in the local cache (object stores have no
    flock or rename)."""
    if isinstance(out, Path):
        return out.with_name(f".{out.name}.partial")
    key = hashlib.sha256(out.encode()).hexdigest()[:32]
    return cache_dir() / "journals" / f"{key}.partial"


class RunJournal:
    """Open with `RunJournal.open`; `record` each finished block, `flush`, then `close`."""

    def __init__(self, path: Path, lock_fd: int, meta: Mapping[str, Any]) -> None:
        self.path = path
        self.run_id: str = meta["run_id"]
        self._lock_fd = lock_fd
        self._pending: dict[int, Record] = {}
        self._segment = len(self._segment_files())
        self._flushed_at = monotonic()

    @classmethod
    def open(
        cls,
        out: Path | str,
        *,
        fingerprint: Mapping[str, Any],
        resume: bool,
        overwrite: bool,
    ) -> RunJournal:
        """Take the journal of `out`: new, or a killed run's when resuming.

        A killed run's journal is continued with `resume` (its fingerprint must
        match), discarded with `overwrite`, and otherwise refused.
        """
        path = journal_path(out)
        if path.exists():
            lock_fd = _lock(path, out)
            meta = _read_meta(path)
            if resume and meta is not None and meta["fingerprint"] == dict(fingerprint):
                return cls(path, lock_fd, meta)
            if not (resume or overwrite):
                os.close(lock_fd)
                raise RunError(
                    f"{out}: an earlier run was killed or failed, leaving partial results in "
                    f"{path.name}; "
                    "pass --resume to continue it or --overwrite to start over"
                )
            if resume and not overwrite:
                os.close(lock_fd)
                differs = _differences(meta, fingerprint)
                raise RunError(
                    f"{out}: the partial results in {path.name} are from a different run "
                    f"({differs} differ); pass --overwrite to start over"
                )
            shutil.rmtree(path)
            os.close(lock_fd)
        return cls._create(out, path, fingerprint)

    @classmethod
    def _create(cls, out: Path | str, path: Path, fingerprint: Mapping[str, Any]) -> RunJournal:
        """Built under a temporary name and renamed: of two racing runs, one wins."""
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        (tmp / "segments").mkdir(parents=True)  # parents: the cache's journals/ for a URL
        meta = {"run_id": str(uuid.uuid4()), "fingerprint": dict(fingerprint)}
        _write_durably(tmp / "run.json", json.dumps(meta, sort_keys=True).encode())
        lock_fd = _lock(tmp, out)
        try:
            os.rename(tmp, path)
        except OSError:
            os.close(lock_fd)
            shutil.rmtree(tmp, ignore_errors=True)
            raise RunError(f"{out}: another run is writing it") from None
        return cls(path, lock_fd, meta)

    @property
    def staging(self) -> Path:
        """Where the run store is written before it is moved into place."""
        return self.path / "store.zarr"

    def done(self) -> dict[int, Record]:
        """Every block a previous attempt made durable."""
        records: dict[int, Record] = {}
        for segment in self._segment_files():
            with np.load(segment, allow_pickle=False) as npz:
                metas = json.loads(bytes(npz["meta.json"]).decode())
                for key, meta in metas.items():
                    names = meta.pop("arrays")
                    records[int(key)] = ({n: npz[f"{key}/{n}"] for n in names}, meta)
        return records

    def record(self, index: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Queue a finished block; it is durable within FLUSH_SECONDS."""
        self._pending[index] = (dict(arrays), dict(meta))
        waited = monotonic() - self._flushed_at
        many = len(self._pending) >= FLUSH_BLOCKS and waited >= FLUSH_MIN_SECONDS
        if many or waited >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._flushed_at = monotonic()
        if not self._pending:
            return
        payload: dict[str, Any] = {}  # arrays; Any, as numpy's stubs match ** to allow_pickle
        metas = {}
        for index, (arrays, meta) in self._pending.items():
            payload.update({f"{index}/{name}": a for name, a in arrays.items()})
            metas[str(index)] = {**meta, "arrays": list(arrays)}
        payload["meta.json"] = np.frombuffer(json.dumps(metas).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **payload)
        _write_durably(self.path / "segments" / f"{self._segment:06d}.npz", buffer.getvalue())
        self._segment += 1
        self._pending.clear()

    def close(self, *, complete: bool) -> None:
        """Release the lock; the journal stays for a resume unless the run completed.

        A run that failed before anything was made durable leaves nothing behind.
        """
        if not complete:
            self.flush()
        if complete or not self._segment_files():
            shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock_fd)

    def _segment_files(self) -> list[Path]:
        return sorted((self.path / "segments").glob("*.npz"))


def _lock(path: Path, out: Path | str) -> int:
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunError(f"{out}: another run is writing it") from None
    return fd


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "run.json").read_text())
    except (OSError, ValueError):
        return None


def _differences(meta: Mapping[str, Any] | None, fingerprint: Mapping[str, Any]) -> str:
    if meta is None:
        return "run.json is unreadable, so everything may"
    old = meta["fingerprint"]
    keys = sorted(k for k in {*old, *fingerprint} if old.get(k) != fingerprint.get(k))
    return ", ".join(keys)


def _write_durably(path: Path, data: bytes) -> None:
    """Temporary name, fsync, rename, fsync the directory: all or nothing after a crash."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
