"""Load and validate the YAML catalog; resolve where sources and stores live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from .schema import DatasetEntry

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CATALOG = PACKAGE_DIR / "catalog.yaml"
BUNDLED_ROOT = PACKAGE_DIR / "samples"


class CatalogError(ValueError):
    """A catalog that cannot be used; the message is one line naming the file, entry and field."""


def data_root() -> Path:
    return Path(os.environ.get("SIMCAST_DATA_ROOT", "data"))


def store_root() -> Path:
    return Path(os.environ.get("SIMCAST_STORE_ROOT", "stores"))


def catalog_path() -> Path:
    return Path(os.environ.get("SIMCAST_CATALOG", DEFAULT_CATALOG))


@dataclass(frozen=True)
class Catalog:
    path: Path
    entries: dict[str, DatasetEntry]

    def __getitem__(self, name: str) -> DatasetEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries))
            raise CatalogError(f"{self.path}: no data set named {name!r} (known: {known})") from None

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def _first_error(path: Path, name: str, err: ValidationError) -> CatalogError:
    e = err.errors()[0]
    field = ".".join(str(p) for p in e["loc"]) or "(entry)"
    msg = e["msg"].removeprefix("Value error, ")
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return CatalogError(f"{path}: entry {name!r}: field {field}: {msg}{more}")


def load_catalog(path: str | Path | None = None) -> Catalog:
    path = Path(path) if path is not None else catalog_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalog file not found") from None
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise CatalogError(f"{path}: expected a mapping with a 'datasets' mapping of name -> entry")
    entries: dict[str, DatasetEntry] = {}
    for name, body in raw["datasets"].items():
        if not isinstance(body, dict):
            raise CatalogError(f"{path}: entry {name!r}: expected a mapping of fields")
        try:
            entries[name] = DatasetEntry(name=name, **body)
        except ValidationError as err:
            raise _first_error(path, name, err) from None
        except TypeError as err:  # e.g. a duplicate 'name' key
            raise CatalogError(f"{path}: entry {name!r}: {err}") from None
    return Catalog(path=path, entries=entries)


def get_entry(name: str, path: str | Path | None = None) -> DatasetEntry:
    return load_catalog(path)[name]


def source_root(entry: DatasetEntry) -> Path:
    return BUNDLED_ROOT if entry.source.root == "bundled" else data_root()


def store_path(entry: DatasetEntry) -> Path:
    p = Path(entry.store)
    return p if p.is_absolute() else store_root() / p
