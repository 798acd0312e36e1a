"""The catalog of data sets simcast knows (YAML validated by a typed schema) and the released model presets."""

from .loader import BUNDLED_ROOT, DEFAULT_CATALOG, Catalog, CatalogError, load_catalog, read_entries
from .presets import Preset, load_preset, preset_names
from .schema import DatasetEntry, Extent, Period, Source, Splits, Training, Variable, Window

__all__ = [
    "BUNDLED_ROOT", "DEFAULT_CATALOG", "Catalog", "CatalogError", "DatasetEntry", "Extent", "Period", "Preset",
    "Source", "Splits", "Training", "Variable", "Window", "load_catalog", "load_preset", "preset_names",
    "read_entries",
]
