"""What one block's task returns to the driver, and how the journal keeps it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from satdask.core.grid import Block
from satdask.io._journal import Record


@dataclass(frozen=True)
class BlockResult:
    block: Block
    variables: dict[str, np.ndarray]
    errors: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    retries: int = 0
    # a pixel model's full-resolution arrays, when no store took them (the lazy API)
    pixels: dict[str, np.ndarray] = field(default_factory=dict)

    def record(self) -> Record:
        meta = {"errors": self.errors, "latency_ms": self.latency_ms, "retries": self.retries}
        return self.variables, meta

    @classmethod
    def from_record(cls, block: Block, record: Record) -> BlockResult:
        variables, meta = record
        return cls(block, variables, meta["errors"], meta["latency_ms"], meta["retries"])
