"""A finished run, as its store describes it: what `run_batch` returns and `open_run` reads."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from satdask.core._html import run_html
from satdask.core.health import should_retrain
from satdask.io import store

if TYPE_CHECKING:
    import xarray as xr


@dataclass(frozen=True)
class RunResult:
    """A finished run: where it is and what its attributes say."""

    path: store.Destination
    attrs: Mapping[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.attrs["run_id"])

    @property
    def counts(self) -> Mapping[str, int]:
        return self.attrs["counts"]

    @property
    def monitoring(self) -> Mapping[str, Any]:
        return self.attrs["monitoring"]

    @property
    def health(self) -> Mapping[str, Any]:
        return self.attrs["health"]

    @property
    def errors(self) -> Sequence[Mapping[str, Any]]:
        return self.attrs["errors"]

    def should_retrain(self) -> bool:
        return should_retrain(self.health)

    def dataset(self) -> xr.Dataset:
        return store.open_store(self.path)

    def _repr_html_(self) -> str:
        return run_html(self.attrs, path=str(self.path))


def open_run(path: str | os.PathLike[str]) -> RunResult:
    """Open a complete run store; refuses a missing or unfinished one."""
    return RunResult(store.destination(path), store.read_attrs(path))
