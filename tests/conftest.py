"""Shared fixtures: real sample data, synthetic files in the real layouts, an isolated working folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from data_catalog import BUNDLED_ROOT, DatasetEntry

# Test tensors are tiny: one thread avoids oversubscribing the 2 cores (measured 10-50x faster per step
# on a loaded machine); the benchmarks, not the tests, measure speed.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# the real samples: ../shared/data when it is beside the checkout, else the copies bundled with simcast
REAL_DATA = SHARED_DATA if (SHARED_DATA / "weather").is_dir() else BUNDLED_ROOT


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test runs in its own folder: data root, store root and working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMCAST_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("SIMCAST_STORE_ROOT", str(tmp_path / "stores"))
    monkeypatch.delenv("SIMCAST_CATALOG", raising=False)
    return tmp_path


@pytest.fixture
def real_data() -> Path:
    return REAL_DATA


def entry(**fields) -> DatasetEntry:
    """A catalog entry from plain fields, with defaults for a small hourly WeatherBench set."""
    base = {
        "name": "test-wb",
        "kind": "weatherbench",
        "source": {"pattern": "wb/2m_temperature/*.nc"},
        "variables": [{"name": "t2m"}],
        "time_step": "1h",
        "splits": {"train": {"start": "2010-01-01", "end": "2010-01-03"},
                   "validation": {"start": "2010-01-04", "end": "2010-01-04"},
                   "test": {"start": "2010-01-05", "end": "2010-01-06"}},
        "window": {"input": 4, "output": 4},
        "store": "test-wb.zarr",
    }
    base.update(fields)
    return DatasetEntry(**base)


def write_catalog(path: Path, entries: dict) -> Path:
    path.write_text(yaml.safe_dump({"datasets": entries}, sort_keys=False))
    return path


# A tiny hourly WeatherBench entry (9 x 13 regional grid, a week) with a tiny model: trains in seconds.
TINY_MODEL = {"hid_S": 4, "hid_T": 8, "N_S": 2, "N_T": 2, "drop_path": 0.0, "mlp_ratio": 2.0}

TINY_WB = {
    "kind": "weatherbench",
    "source": {"pattern": "wb/2m_temperature/*.nc"},
    "variables": [{"name": "t2m"}],
    "time_step": "1h",
    "splits": {"train": {"start": "2010-01-01", "end": "2010-01-04"},
               "validation": {"start": "2010-01-05", "end": "2010-01-05"},
               "test": {"start": "2010-01-06", "end": "2010-01-07"}},
    "window": {"input": 6, "output": 6, "stride": 3},
    "grid": [9, 13],
    "store": "tiny-wb.zarr",
    "training": {"preset": "weatherbench-t2m-5.625deg", "translator": "gsta", "model": TINY_MODEL,
                 "epochs": 1, "batch_size": 8, "lr": 0.01, "schedule": "onecycle", "time_features": True},
}


# The same with a tiny synthetic TaxiBJ file (8 x 8 grid, ten days half-hourly).
TINY_BJ = {
    "kind": "taxibj",
    "source": {"pattern": "bj/BJ13_M8x8_T30_InOut.h5"},
    "variables": [{"name": "inflow"}, {"name": "outflow"}],
    "time_step": "30min",
    "splits": {"train": {"rest": True}, "validation": {"last": "2D"}, "test": {"last": "2D"}},
    "window": {"input": 4, "output": 4, "stride": 4},
    "normalization": "minmax",
    "grid": [8, 8],
    "extent": {"lat": [39.8, 40.0], "lon": [116.3, 116.5], "approximate": True},
    "gaps": "record",
    "holidays": "bj/BJ_Holiday.txt",
    "store": "tiny-bj.zarr",
    "training": {"preset": "taxibj", "translator": "gsta", "model": TINY_MODEL, "epochs": 1, "batch_size": 16,
                 "lr": 0.01, "schedule": "onecycle", "warmup_epochs": 0, "time_features": True},
}


def ingest(what, progress: bool = False, **overrides):
    """Ingest a catalog entry (by name, or an entry object) with overrides (source, store, force, ...)."""
    from pipelines import ingest as stage
    from pipelines.specs import IngestSpec

    spec = (IngestSpec.from_entry(what, **overrides) if isinstance(what, DatasetEntry)
            else IngestSpec.from_catalog(what, **overrides))
    return stage.run(spec, progress=progress)
