"""A progress bar on stderr, shared by every block of the work, however many scenes."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """One line redrawn in place: blocks done out of all blocks of the work."""

    def __init__(self, total: int, *, width: int = 40, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self._width = width
        self._stream = stream or sys.stderr

    def advance(self, n: int = 1) -> None:
        self.done += n
        filled = self._width * self.done // max(self.total, 1)
        bar = "#" * filled + " " * (self._width - filled)
        end = "\n" if self.done >= self.total else ""
        print(f"\r[{bar}] {self.done}/{self.total} blocks", end=end, file=self._stream, flush=True)
