"""Released model configurations as data: one YAML file per preset in ``presets/``, named like it.

A preset holds the SimVP keyword arguments of a released configuration (``model``; the translator is
chosen separately) and, where the paper gives one, its training recipe (``training``)::

    preset = load_preset("taxibj")
    model = SimVP(SimVPConfig(**preset.model, translator="tau"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .loader import CatalogError, safe_load_strict

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    model: dict[str, Any]
    training: dict[str, Any] = {}


def preset_names() -> list[str]:
    """The names of the bundled presets (file stems), sorted."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> Preset:
    """The preset `name`; `CatalogError` (one line) for an unknown name or a malformed file."""
    path = PRESETS_DIR / f"{name}.yaml"
    if name not in preset_names():
        raise CatalogError(f"{PRESETS_DIR}: no preset named {name!r} (known: {', '.join(preset_names())})")
    try:
        raw = safe_load_strict(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("expected a mapping with 'description', 'model' and 'training'")
        return Preset(name=name, **raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(preset)"
        raise CatalogError(f"{path}: field {field}: {first['msg']}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, TypeError) as e:
        problem = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CatalogError(f"{path}: not a valid preset file: {problem}") from None
