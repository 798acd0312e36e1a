"""A verification folder as the report reads it: its files, its verification.json, one sentence about it."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .tables import METRIC_NAMES

FILES = {"json": "verification.json", "netcdf": "verification.nc", "html": "verification.html",
         "markdown": "verification.md"}


def read_verification(folder: str | Path) -> dict:
    """verification.json of a verification folder; one line when it is not one."""
    path = Path(folder) / FILES["json"]
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(folder, "holds no verification.json (written by simcast verify)") from None
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable verification file ({e})") from None


def summary_line(result: dict) -> str:
    """One sentence: what was verified and how the model compares with persistence on the main metric."""
    c, metric = result["counts"], result.get("main_metric", "rmse")
    units = set(result.get("units", {}).values())
    unit = f" {units.pop()}" if len(units) == 1 else ""
    m = result["metrics"]
    text = (f"{c['verified_init_times']} of {c['init_times']} archived forecasts verified "
            f"({result['first_init_time'][:16]} .. {result['last_init_time'][:16]}, {c['scored']} lead times)")
    model, persistence = m["model"].get(metric), m.get("persistence", {}).get(metric)
    if isinstance(model, (int, float)) and isinstance(persistence, (int, float)):
        text += f"; {METRIC_NAMES.get(metric, metric)} model {model:.4g}{unit}, persistence {persistence:.4g}{unit}"
    return text + "."
