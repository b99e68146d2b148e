"""Writing files so a crash or a race never leaves half a file or replaces one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_new(path: Path, data: bytes) -> None:
    """Write `path`, which must not exist: full temp file, fsync, then a hard link.

    `os.link` refuses an existing name, so two writers cannot both succeed and a
    reader sees either nothing or the whole file. Raises FileExistsError.
    """
    tmp = _synced_temp(path, data)
    try:
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def replace_file(path: Path, data: bytes) -> None:
    """A full temp file renamed over `path`: a reader sees the old file or the new one."""
    tmp = _synced_temp(path, data)
    try:
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _synced_temp(path: Path, data: bytes) -> str:
    """`data` in a new temp file beside `path`, fsynced: removed again if writing fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp
