"""The run store's per-tile variables: names, dtypes, CF attributes and fill values.

One table for the batch run (which assembles the tile grid), the store (which
writes it), the lazy feature map and `runs verify`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from satdask.core.features import STATUS_NAMES, STATUS_NODATA


@dataclass(frozen=True)
class Variable:
    """One per-tile variable of a run.

    `empty` is what a tile holds before its block reports (a tile with no result).
    `fill` is the Zarr fill value, what a chunk that was never written reads as:
    for the class and the status, a value no tile can have, so a lost chunk shows
    instead of reading as "ok, dark". Floats use NaN for both.
    """

    name: str
    dtype: str
    empty: float
    fill: float
    attrs: Mapping[str, Any] = field(default_factory=dict)


_STATUS_FLAGS = {
    "flag_values": list(range(len(STATUS_NAMES))),
    "flag_meanings": " ".join(STATUS_NAMES),
}
SCHEMA: tuple[Variable, ...] = (
    Variable(
        "prediction",
        "int8",
        empty=-1,
        fill=-128,
        attrs={
            "long_name": "predicted class",
            "flag_values": [-1, 0, 1],
            "flag_meanings": "none dark bright",
        },
    ),
    Variable(
        "mean_intensity",
        "float64",
        empty=np.nan,
        fill=np.nan,
        attrs={"long_name": "mean of valid pixel values over the selected bands"},
    ),
    Variable(
        "std_intensity",
        "float64",
        empty=np.nan,
        fill=np.nan,
        attrs={"long_name": "population std of valid pixel values"},
    ),
    Variable(
        "valid_fraction",
        "float32",
        empty=0.0,
        fill=np.nan,
        attrs={"long_name": "fraction of the tile's samples that are valid"},
    ),
    Variable(
        "status",
        "uint8",
        empty=STATUS_NODATA,
        fill=255,
        attrs={"long_name": "tile status", **_STATUS_FLAGS},
    ),
)
BY_NAME: dict[str, Variable] = {v.name: v for v in SCHEMA}
VARIABLES: tuple[str, ...] = tuple(BY_NAME)
# CF attributes of each per-tile variable, in the run store and in `tile_features`
VARIABLE_ATTRS: dict[str, Mapping[str, Any]] = {v.name: v.attrs for v in SCHEMA}
# Zarr fill values of the integer variables (floats are NaN)
FILL_VALUES: dict[str, float] = {v.name: v.fill for v in SCHEMA if v.dtype[0] in "iu"}
