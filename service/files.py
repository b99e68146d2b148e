"""Files under a directory, opened once by descriptor and never again by a name that can change.

A name checked and then opened by name again can be swapped in between (a symlink to a
file outside, exchanged with `renameat2(RENAME_EXCHANGE)`). So a file is resolved and
opened in one step relative to a descriptor of the data root, and everything after that
(its `fstat`, the TIFF header, GDAL on every reader thread) goes through the descriptor:
GDAL is given `/proc/self/fd/N`, which reopens the open file itself, not a name.

- **openat2.** Where the kernel has it (Linux 5.6+), `openat2(RESOLVE_BENEATH |
  RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` opens a path without symlinks in one
  call, and the kernel guarantees it stays beneath the root.
- **The walk.** A path with a symlink in it (or a kernel without openat2, or one whose
  seccomp filter refuses it) is resolved here, one component at a time from the root's
  descriptor: each name is looked at with `fstatat(AT_SYMLINK_NOFOLLOW)` and opened with
  `O_NOFOLLOW`, so an open never follows a link, and a name swapped between the look and
  the open fails the open. A symlink's target is read with `readlinkat` and walked the
  same way: it may not climb above the root (`..` at the root), name a hidden entry, or
  be absolute unless it spells a path under the root's own (resolved) path. At most
  `MAX_LINKS` links are followed. The file reached is then checked by its descriptor:
  `/proc/self/fd/N` must name exactly the path walked, so a directory moved out of the
  root during the walk is caught.
- **Opening.** `O_NONBLOCK` (a FIFO cannot hang the open), `O_NOCTTY`, `O_CLOEXEC`.

Linux only (openat2, `/proc/self/fd`), as the service's deployments are.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import weakref
from collections.abc import Sequence
from pathlib import Path

MAX_LINKS = 40  # as the kernel's own limit on links in one path
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_NO_OPENAT2 = {errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL}

# None: not tried yet; then whether this kernel (and its seccomp filter) allows openat2.
# Tests set it to False to exercise the walk.
OPENAT2: bool | None = None


class RefusedError(Exception):
    """The path leaves the root, names a hidden entry, loops, or is not there."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    fd = _libc.syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return int(fd)


class OpenFile:
    """An open file: its descriptor, its `fstat`, and the name GDAL reads it by.

    The descriptor is closed by `close()` or when the object is collected, so it stays
    open for as long as anything (a cached scene, a request reading it) holds the object.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stat = os.fstat(fd)
        self._finalizer = weakref.finalize(self, os.close, fd)

    @property
    def path(self) -> str:
        """`/proc/self/fd/N`: opening it opens this file, whatever its names became."""
        return f"/proc/self/fd/{self.fd}"

    @property
    def stamp(self) -> tuple[int, int, int, int]:
        """(device, inode, size, mtime): what caches of this file are keyed by."""
        st = self.stat
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def pread(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        self._finalizer()


class Directory:
    """A directory held by an `O_PATH` descriptor, under which names are resolved."""

    def __init__(self, path: Path | str) -> None:
        self.path = os.path.realpath(path)
        fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)

    def open(self, parts: Sequence[str]) -> tuple[OpenFile, tuple[str, ...]]:
        """Open the file at `parts` below this directory: (file, the parts it was found
        at after following links). Raises RefusedError."""
        _check_names(parts)
        if _kernel_resolves():
            try:
                fd = _openat2(self.fd, "/".join(parts), FILE_FLAGS, _BENEATH)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EXDEV, errno.EAGAIN):
                    raise RefusedError(exc.strerror) from None
            else:  # no link on the way: the path is the one given
                return OpenFile(fd), tuple(parts)
        fd, found, _ = _walk(self.fd, self.path, list(parts), open_file=True)
        file = OpenFile(fd)
        where = os.readlink(file.path)
        if where != os.path.join(self.path, *found):
            file.close()
            raise RefusedError(f"moved while it was opened: {where}")
        return file, found

    def look(self, parts: Sequence[str]) -> tuple[os.stat_result, tuple[str, ...]]:
        """`open` without opening the file: its `lstat` and where links led (for listing)."""
        _check_names(parts)
        _, found, st = _walk(self.fd, self.path, list(parts), open_file=False)
        return st, found

    def close(self) -> None:
        self._finalizer()


_BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS


def _check_names(parts: Sequence[str]) -> None:
    """Names the file system can take: no NUL, nothing a file name cannot encode."""
    for part in parts:
        try:
            if "\0" in part or "/" in part:
                raise ValueError(part)
            os.fsencode(part)
        except ValueError:  # UnicodeEncodeError too (a lone surrogate)
            raise RefusedError("not a file name") from None


def _kernel_resolves() -> bool:
    """Whether openat2 works here: tried once on the working directory."""
    global OPENAT2
    if OPENAT2 is None:
        here = os.open(".", DIR_FLAGS)
        try:
            os.close(_openat2(here, ".", DIR_FLAGS, _BENEATH))
            OPENAT2 = True
        except OSError as exc:
            OPENAT2 = exc.errno not in _NO_OPENAT2
        finally:
            os.close(here)
    return OPENAT2


def _walk(
    root_fd: int, root: str, todo: list[str], *, open_file: bool
) -> tuple[int, tuple[str, ...], os.stat_result]:
    """Resolve `todo` below the root one name at a time: (descriptor of the file, or -1
    when `open_file` is False; the parts it was found at; its lstat)."""
    dirs: list[tuple[int, str]] = []  # descriptors of the directories below the root
    links = 0
    try:
        while todo:
            name = todo.pop(0)
            here = dirs[-1][0] if dirs else root_fd
            if name in ("", "."):
                continue
            if name == "..":
                if not dirs:
                    raise RefusedError("above the root")
                os.close(dirs.pop()[0])
                continue
            if name.startswith("."):
                raise RefusedError("a hidden name")
            try:
                st = os.stat(name, dir_fd=here, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_LINKS:
                        raise RefusedError("too many links")
                    target = os.readlink(name, dir_fd=here)
                    if target.startswith("/"):
                        todo[:0] = _below(target, root)
                        while dirs:
                            os.close(dirs.pop()[0])
                    else:
                        todo[:0] = target.split("/")
                    continue
                if todo:
                    dirs.append((os.open(name, DIR_FLAGS, dir_fd=here), name))
                    continue
                found = (*(n for _, n in dirs), name)
                if not open_file:
                    return -1, found, st
                return os.open(name, FILE_FLAGS, dir_fd=here), found, st
            except OSError as exc:  # gone, not a directory, or swapped since the look
                raise RefusedError(exc.strerror) from None
        raise RefusedError("no file named")
    finally:
        for fd, _ in dirs:
            os.close(fd)


def _below(target: str, root: str) -> list[str]:
    """The parts of an absolute link target under `root`; RefusedError if it is not under it."""
    prefix = root.rstrip("/") + "/"
    if not target.startswith(prefix):
        raise RefusedError("an absolute link out of the root")
    return target[len(prefix) :].split("/")
