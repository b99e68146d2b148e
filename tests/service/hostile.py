"""Hostile files for the service tests (imported by name: this folder is on sys.path).

- `tiff_bomb`: a TIFF written byte by byte that claims any size: with no pixel data at
  all (a header bomb of a few hundred bytes), or with one DEFLATE strip of a single
  value that inflates to the whole claimed size (a decompression bomb of about 1/1000th
  of it, built from one compressed chunk repeated, so a 1 GiB strip takes well under a
  second to write).
- `Swapper`: a separate process exchanging pairs of names with
  `renameat2(RENAME_EXCHANGE)` in a tight loop, the race of issue 14.
- `OpenWatch`: inotify on one file, which sees any process open or read it by any name.
- `peak_rss_kb`: a process tree's peak resident memory (`VmHWM`), from /proc.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

EPSG_UTM33N = 32633


def tiff_bomb(
    path: Path,
    *,
    width: int,
    height: int,
    value: int | None = None,
    rows_per_strip: int | None = None,
) -> Path:
    """A classic little-endian GeoTIFF of 1 uint8 band (EPSG:32633, 10 m pixels, nodata 0).

    `value=None`: no pixel data (every strip at offset 0, 0 bytes: a header bomb).
    Otherwise strips of `rows_per_strip` rows (default: one strip for the whole raster),
    each one DEFLATE stream of `value`.
    """
    rows = rows_per_strip or height
    count = -(-height // rows)
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    offsets, sizes = [0] * count, [0] * count
    if value is not None:
        for i in range(count):
            n = min(rows, height - i * rows)
            offsets[i], sizes[i] = len(out), 0
            stream = _deflate_of(bytes([value]) * width, n)
            out += stream
            sizes[i] = len(stream)

    def array(fmt: str, values: list[float] | list[int]) -> int:
        offset = len(out)
        out.extend(struct.pack("<" + fmt * len(values), *values))
        return offset

    geokeys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, EPSG_UTM33N]
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 8),  # Adobe DEFLATE
        (262, 3, 1, 1),
        (273, 4, count, array("I", offsets) if count > 1 else offsets[0]),
        (277, 3, 1, 1),
        (278, 4, 1, rows),
        (279, 4, count, array("I", sizes) if count > 1 else sizes[0]),
        (284, 3, 1, 1),
        (33550, 12, 3, array("d", [10.0, 10.0, 0.0])),
        (33922, 12, 6, array("d", [0.0, 0.0, 0.0, 400000.0, 6000000.0, 0.0])),
        (34735, 3, len(geokeys), array("H", geokeys)),
        (42113, 2, 2, 0x30),  # GDAL_NODATA "0\0": fits in the entry itself
    ]
    if len(out) % 2:
        out += b"\0"
    ifd = len(out)
    out += struct.pack("<H", len(entries))
    for tag, kind, n, value_or_offset in entries:
        if kind in (2, 3) and n <= 2 and value_or_offset < 0x10000:
            out += struct.pack("<HHIHH", tag, kind, n, value_or_offset, 0)
        else:
            out += struct.pack("<HHII", tag, kind, n, value_or_offset)
    out += struct.pack("<I", 0)
    out[4:8] = struct.pack("<I", ifd)
    path.write_bytes(bytes(out))
    return path


def _deflate_of(row: bytes, rows: int) -> bytes:
    """The zlib stream of `row` repeated `rows` times, from one chunk compressed once.

    After a full flush deflate starts afresh, so the compressed form of a chunk is the
    same bytes every time: the stream is one header, that chunk's blocks repeated, an
    empty final block, and the Adler-32 of it all (combined, not recomputed).
    """
    per_chunk = max(1, min(rows, (4 << 20) // len(row)))
    chunk = row * per_chunk
    whole, rest = divmod(rows, per_chunk)
    c = zlib.compressobj(9)
    first = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert first.endswith(again)  # the same blocks after the 2-byte header
    tail = c.compress(row * rest) + c.flush(zlib.Z_FULL_FLUSH) if rest else b""
    checksum = _adler_repeat(zlib.adler32(chunk), len(chunk), whole)
    if rest:
        checksum = _adler_combine(checksum, zlib.adler32(row * rest), len(row) * rest)
    end = b"\x03\x00" + struct.pack(">I", checksum)  # empty final fixed block, Adler-32
    return first + again * (whole - 1) + tail + end


_BASE = 65521


def _adler_combine(a1: int, a2: int, len2: int) -> int:
    """zlib's adler32_combine: the checksum of A + B from theirs and B's length."""
    rem = len2 % _BASE
    sum1 = a1 & 0xFFFF
    sum2 = (rem * sum1) % _BASE
    sum1 += (a2 & 0xFFFF) + _BASE - 1
    sum2 += (a1 >> 16) + (a2 >> 16) + _BASE - rem
    sum1 %= _BASE
    sum2 %= _BASE
    return (sum2 << 16) | sum1


def _adler_repeat(adler: int, length: int, times: int) -> int:
    """The checksum of a chunk repeated `times` times (by doubling)."""
    result, result_len = 1, 0
    power, power_len = adler, length
    while times:
        if times & 1:
            result = _adler_combine(result, power, power_len) if result_len else power
            result_len += power_len
        power = _adler_combine(power, power, power_len)
        power_len *= 2
        times >>= 1
    return result


# ---------------------------------------------------------------------------
# The race: names exchanged in a loop by another process
# ---------------------------------------------------------------------------

_SWAP = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
args = [os.fsencode(a) for a in sys.argv[1:]]
pairs = list(zip(args[0::2], args[1::2]))
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
print("ready", flush=True)
swaps = 0
while not stop:
    for a, b in pairs:
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")
        swaps += 1
for a, b in pairs:  # leave each pair as it was found: the regular file at its own name
    if os.path.islink(a):
        libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
print(swaps, flush=True)
"""


class Swapper:
    """`with Swapper(pairs) as s:` exchanges each (regular file, symlink) pair of names
    until the block ends; `s.swaps` is how many exchanges it made."""

    def __init__(self, pairs: list[tuple[Path, Path]]) -> None:
        self.args = [str(p) for pair in pairs for p in pair]
        self.swaps = 0

    def __enter__(self) -> Swapper:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SWAP, *self.args], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, out
        self.swaps = int(out.split()[-1])


# ---------------------------------------------------------------------------
# Watching a file, measuring a process
# ---------------------------------------------------------------------------

IN_ACCESS, IN_OPEN = 0x1, 0x20
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then name)


class OpenWatch:
    """inotify on one file: how many times any process opened or read it, by any name
    (a watch is on the inode), since the last call to `events`."""

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(path), IN_ACCESS | IN_OPEN) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")

    def events(self) -> int:
        count = 0
        while True:
            try:
                buffer = os.read(self.fd, 65536)
            except BlockingIOError:
                return count
            offset = 0
            while offset < len(buffer):
                _, _, _, length = _EVENT.unpack_from(buffer, offset)
                offset += _EVENT.size + length
                count += 1

    def close(self) -> None:
        os.close(self.fd)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn may run its app in a child process)."""
    found, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(c) for c in children]
        todo += [int(c) for c in children]
    return found


def peak_rss_kb(pid: int) -> int:
    """The largest peak resident set (`VmHWM`) of `pid` and its descendants, in KiB."""
    return max(_status_kb(p, "VmHWM") for p in process_tree(pid))
