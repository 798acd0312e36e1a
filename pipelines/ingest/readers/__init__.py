"""Readers, registered by catalog kind: each turns raw files of one layout into the canonical dataset, once, at
the edge, and declares the properties of its data that later stages need (written into the store's attributes,
so that nothing downstream branches on the kind).

Canonical form: a Dataset with `data` of dims (time, channel, lat, lon) -- (time, channel, y, x) for grids
that are not lon/lat -- float32 and lazy (dask), channel coordinates `variable`, `level`, `units`,
`standard_name`, `long_name`, and a `source` coordinate along time naming the file each time came from.

Adding a source layout: a module here with a function `read(entry, files) -> Dataset` decorated with
`@register("kind", **properties)`, and the kind in the catalog schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import xarray as xr

from data_catalog import DatasetEntry

from ...errors import InputError


@dataclass(frozen=True)
class Reader:
    kind: str
    read: Callable[[DatasetEntry, dict[str, list[Path]]], xr.Dataset]
    physical_floor: float | None = None  # the smallest value the data can take physically (counts: 0)
    weekly_rhythm: bool = False          # day of week matters (human activity): an input feature
    time_zone: str = "UTC"               # of the time stamps; "" for an unnamed local time
    image_metrics: bool = False          # also score SSIM / PSNR on data scaled to [0, 1]
    options: dict = field(default_factory=dict)

    def properties(self, entry: DatasetEntry) -> dict:
        return {"physical_floor": self.physical_floor, "weekly_rhythm": self.weekly_rhythm,
                "time_zone": entry.time_zone if entry.time_zone is not None else self.time_zone,
                "image_metrics": self.image_metrics}


READERS: dict[str, Reader] = {}


def register(kind: str, **properties):
    def decorate(read):
        READERS[kind] = Reader(kind, read, **properties)
        return read
    return decorate


def reader_for(entry: DatasetEntry) -> Reader:
    if entry.kind not in READERS:
        raise InputError(entry.name, f"no reader for kind {entry.kind!r} (known: {', '.join(sorted(READERS))})")
    return READERS[entry.kind]


from . import taxibj, weatherbench, wb2  # noqa: E402,F401  (registers the readers)
from .wb2 import find_variable, lat_lon_names, store_names  # noqa: E402  (public: sources, external forecasts)
from .weatherbench import canonical_longitudes  # noqa: E402
