"""Readers: each turns raw files of one layout into the canonical dataset, once, at the edge.

Canonical form: a Dataset with `data` of dims (time, channel, lat, lon) -- (time, channel, y, x) for grids
that are not lon/lat -- float32 and lazy (dask), channel coordinates `variable`, `level`, `units`,
`standard_name`, `long_name`, and a `source` coordinate along time naming the file each time came from.
"""

from __future__ import annotations

from data_catalog import DatasetEntry

from .taxibj import read_taxibj
from .weatherbench import read_weatherbench


def read_source(entry: DatasetEntry, files: dict):
    if entry.kind == "weatherbench":
        return read_weatherbench(entry, files)
    return read_taxibj(entry, files)


__all__ = ["read_source", "read_taxibj", "read_weatherbench"]
