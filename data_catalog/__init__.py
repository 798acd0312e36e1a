"""The catalog of data sets simcast knows: a YAML file validated by a typed schema."""

from .loader import (
    BUNDLED_ROOT,
    Catalog,
    CatalogError,
    data_root,
    get_entry,
    load_catalog,
    source_root,
    store_path,
    store_root,
)
from .schema import DatasetEntry, Extent, Period, Source, Splits, Training, Variable, Window

__all__ = [
    "BUNDLED_ROOT", "Catalog", "CatalogError", "DatasetEntry", "Extent", "Period", "Source", "Splits", "Training",
    "Variable", "Window", "data_root", "get_entry", "load_catalog", "source_root", "store_path", "store_root",
]
