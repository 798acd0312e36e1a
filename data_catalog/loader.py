"""Load and validate the YAML catalog: the bundled one, with a user's catalog files layered over it.

Where files live (data, store and run roots) is decided by `pipelines.settings`, not here: this package
imports nothing of ours and reads no environment.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Catalog:
    entries: dict[str, DatasetEntry]
    origins: dict[str, Path]  # the catalog file each entry comes from

    @property
    def path(self) -> Path:
        """The file of the last layer (the user's catalog when there is one)."""
        return list(self.origins.values())[-1] if self.origins else DEFAULT_CATALOG

    def __getitem__(self, name: str) -> DatasetEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries))
            files = " + ".join(str(p) for p in dict.fromkeys(self.origins.values())) or str(DEFAULT_CATALOG)
            raise CatalogError(f"{files}: no data set named {name!r} (known: {known})") from None

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


class DuplicateKey(yaml.YAMLError):
    """A mapping that names one key twice (plain YAML keeps the last one silently)."""

    def __init__(self, key, first: int, second: int, top: bool):
        what = f"entry {key!r} appears twice" if top else f"key {key!r} appears twice in one mapping"
        super().__init__(f"{what} (lines {first} and {second}); YAML would keep the last one silently: remove or "
                         "rename one")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing a mapping that names one key twice."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKey(key, seen[key], line, getattr(node, "_simcast_entries", False))
                except TypeError:  # an unhashable key: the base class says so
                    break
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _mark_entries(node) -> None:
    """Flag the `datasets` mapping so that a duplicate there is reported as an entry."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            if getattr(key_node, "value", None) == "datasets" and isinstance(value, yaml.MappingNode):
                value._simcast_entries = True


def safe_load_strict(text: str):
    """yaml.safe_load that refuses duplicate keys in any mapping (DuplicateKey, a yaml.YAMLError)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _mark_entries(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(e: yaml.YAMLError) -> str:
    if isinstance(e, DuplicateKey):
        return str(e)
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"


def read_entries(path: Path) -> dict[str, DatasetEntry]:
    """The entries of one catalog file, validated."""
    try:
        raw = safe_load_strict(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalog file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(f"{path}: catalog file not readable: {getattr(e, 'strerror', None) or e}") from None
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: {_yaml_problem(e)}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise CatalogError(f"{path}: expected a mapping with a 'datasets' mapping of name -> entry")
    entries: dict[str, DatasetEntry] = {}
    for name, body in raw["datasets"].items():
        if not isinstance(body, dict):
            raise CatalogError(f"{path}: entry {name!r}: expected a mapping of fields")
        if "name" in body:
            raise CatalogError(f"{path}: entry {name!r}: field name: the entry's key is its name; remove 'name'")
        try:
            entries[str(name)] = DatasetEntry(name=str(name), **body)
        except ValidationError as err:
            raise _first_error(path, name, err) from None
    return entries


def load_catalog(*files: str | Path, bundled: bool = True) -> Catalog:
    """The bundled catalog with each of `files` layered over it in order: an entry of a later file adds to
    the catalog, or replaces the entry of the same name."""
    layers = ([DEFAULT_CATALOG] if bundled else []) + [Path(f) for f in files]
    entries: dict[str, DatasetEntry] = {}
    origins: dict[str, Path] = {}
    for path in layers:
        for name, entry in read_entries(path).items():
            entries[name] = entry
            origins[name] = path
    return Catalog(entries=entries, origins=origins)
