"""Path containment: a client's relative path becomes a file opened under the data root, or 404.

The rules, each answering the same `NotFoundError` whether the file is missing or
forbidden, so a client cannot probe what exists outside the root:

- a non-empty relative path of at most `MAX_PATH_CHARS` characters;
- no NUL or other control character, no backslash, no `%` (so no percent-encoded
  traversal can survive any later decoding) and no `:` (so no `file:`, `http:`,
  `s3:` or drive prefix);
- not absolute (`/`, which also covers `/vsi...`), no `~`, and no part starting
  with `.` (so no `..` and no hidden or temporary file);
- a raster suffix from `RASTER_SUFFIXES` (so no `.vrt`), checked on the name
  given and on the name links lead to;
- opened once, by descriptor, under a descriptor of the root (`service.files`): symlinks
  are followed only while every step stays under the root and names no hidden entry,
  so a link reaches exactly what a client could name by itself, and nothing else;
- a regular file with one name (`st_nlink == 1`): a hard link inside the root to a file
  outside it cannot be told from the file itself, so files with more than one name are
  refused unless the operator allows them (`SATDASK_ALLOW_HARD_LINKS`).

What happens to the open file next (TIFF signature, header, limits) is `service.scenes`.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path, PurePosixPath

from service.errors import NotFoundError
from service.files import Directory, OpenFile, RefusedError

log = logging.getLogger("satdask.service")

MAX_PATH_CHARS = 1024
RASTER_SUFFIXES = frozenset({".tif", ".tiff"})
_FORBIDDEN_CHARS = frozenset("\\%:~") | {chr(c) for c in range(32)} | {"\x7f"}


def check_relative(text: object, *, suffixes: frozenset[str] = RASTER_SUFFIXES) -> PurePosixPath:
    """The syntactic rules; raises NotFoundError on any breach (run stores: `.zarr`)."""
    if not isinstance(text, str) or not text or len(text) > MAX_PATH_CHARS:
        raise NotFoundError
    if text.startswith("/") or not _FORBIDDEN_CHARS.isdisjoint(text):
        raise NotFoundError
    rel = PurePosixPath(text)
    if not rel.parts or any(part.startswith(".") for part in rel.parts):
        raise NotFoundError
    if rel.suffix.lower() not in suffixes:
        raise NotFoundError
    return rel


def open_under(root: Directory, text: object, *, hard_links: bool = False) -> tuple[str, OpenFile]:
    """(normalised relative path, the file opened) for a client's path; NotFoundError.

    Nothing after this looks the name up again: the file is read through its descriptor.
    """
    rel = check_relative(text)
    try:
        file, found = root.open(rel.parts)
    except RefusedError:
        raise NotFoundError from None
    try:
        _accept(rel, found, file.stat, hard_links=hard_links)
    except NotFoundError:
        file.close()
        raise
    return rel.as_posix(), file


def resolve_under(
    root: Path | Directory, text: object, *, hard_links: bool = False
) -> tuple[str, Path, os.stat_result]:
    """What `open_under` would open, looked at without opening it (for listings):
    (normalised relative path, the path links lead to, its lstat); NotFoundError."""
    rel = check_relative(text)
    try:
        directory = root if isinstance(root, Directory) else _directory(root)
        st, found = directory.look(rel.parts)
    except (OSError, RefusedError):
        raise NotFoundError from None
    _accept(rel, found, st, hard_links=hard_links)
    return rel.as_posix(), Path(directory.path, *found), st


def _accept(
    rel: PurePosixPath, found: tuple[str, ...], st: os.stat_result, *, hard_links: bool
) -> None:
    if PurePosixPath(found[-1]).suffix.lower() not in RASTER_SUFFIXES:
        raise NotFoundError
    if not stat.S_ISREG(st.st_mode):
        raise NotFoundError
    if st.st_nlink > 1 and not hard_links:
        log.debug("%s refused: a file with %d names (SATDASK_ALLOW_HARD_LINKS)", rel, st.st_nlink)
        raise NotFoundError


_DIRECTORIES: dict[tuple[str, int, int], Directory] = {}
_DIRECTORIES_LOCK = threading.Lock()


def _directory(root: Path) -> Directory:
    """A descriptor of `root`, kept while `root` is the same directory (device, inode);
    one dropped from this small cache closes when its last user lets go of it."""
    st = os.stat(root)
    key = (str(root), st.st_dev, st.st_ino)
    with _DIRECTORIES_LOCK:
        found = _DIRECTORIES.get(key)
        if found is None:
            if len(_DIRECTORIES) >= 16:
                _DIRECTORIES.pop(next(iter(_DIRECTORIES)))
            found = _DIRECTORIES[key] = Directory(root)
    return found
