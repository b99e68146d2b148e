"""Path containment: a client's relative path becomes a file under the data root, or 404.

The rules, each answering the same `NotFoundError` whether the file is missing or
forbidden, so a client cannot probe what exists outside the root:

- a non-empty relative path of at most `MAX_PATH_CHARS` characters;
- no NUL or other control character, no backslash, no `%` (so no percent-encoded
  traversal can survive any later decoding) and no `:` (so no `file:`, `http:`,
  `s3:` or drive prefix);
- not absolute (`/`, which also covers `/vsi...`), no `~`, and no part starting
  with `.` (so no `..` and no hidden or temporary file);
- a raster suffix from `RASTER_SUFFIXES` (so no `.vrt`), checked on the name
  given and on the resolved target;
- resolved (symlinks followed), the real path must be a regular file inside the
  resolved root (`Path.is_relative_to`, never a string prefix);
- the file must start with a TIFF signature, so GDAL only ever sees TIFF bytes,
  whatever driver would recognise the content (a VRT named `.tif` included).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from service.errors import NotFoundError

MAX_PATH_CHARS = 1024
RASTER_SUFFIXES = frozenset({".tif", ".tiff"})
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_FORBIDDEN_CHARS = frozenset("\\%:~") | {chr(c) for c in range(32)} | {"\x7f"}


def check_relative(text: object) -> PurePosixPath:
    """The syntactic rules; raises NotFoundError on any breach."""
    if not isinstance(text, str) or not text or len(text) > MAX_PATH_CHARS:
        raise NotFoundError
    if text.startswith("/") or not _FORBIDDEN_CHARS.isdisjoint(text):
        raise NotFoundError
    rel = PurePosixPath(text)
    if not rel.parts or any(part.startswith(".") for part in rel.parts):
        raise NotFoundError
    if rel.suffix.lower() not in RASTER_SUFFIXES:
        raise NotFoundError
    return rel


def resolve_under(root: Path, text: object) -> tuple[str, Path, os.stat_result]:
    """(normalised relative path, real path, stat) of a raster inside `root` (resolved).

    Fast path: one `lstat` per component below the root; when none is a symlink the
    real path is `root/rel` itself. Any symlink sends the path through full resolution
    and the `is_relative_to` check.
    """
    rel = check_relative(text)
    current = str(root)
    try:
        for part in rel.parts:
            current = os.path.join(current, part)
            st = os.lstat(current)
            if stat.S_ISLNK(st.st_mode):
                return _resolve_links(root, rel)
    except (OSError, ValueError):  # missing, not a directory, name too long
        raise NotFoundError from None
    if not stat.S_ISREG(st.st_mode):
        raise NotFoundError
    return rel.as_posix(), Path(current), st


def _resolve_links(root: Path, rel: PurePosixPath) -> tuple[str, Path, os.stat_result]:
    try:
        real = (root / rel).resolve(strict=True)
        st = real.stat()
    except (OSError, RuntimeError, ValueError):  # missing, loop, too long
        raise NotFoundError from None
    if not real.is_relative_to(root) or real.suffix.lower() not in RASTER_SUFFIXES:
        raise NotFoundError
    if not stat.S_ISREG(st.st_mode):
        raise NotFoundError
    return rel.as_posix(), real, st


def is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in TIFF_SIGNATURES
    except OSError:
        return False


def list_rasters(root: Path, *, limit: int) -> tuple[list[str], bool]:
    """Relative paths of the rasters under `root` that `resolve_under` would accept.

    Symlinked directories are not followed; symlinked files count only if they
    resolve inside the root. Returns (sorted paths, truncated).
    """
    found: list[str] = []
    truncated = False
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            try:
                resolve_under(root, rel)
            except NotFoundError:
                continue
            if len(found) >= limit:
                truncated = True
                break
            found.append(rel)
        if truncated:
            break
    return sorted(found), truncated
