"""Where things live, decided once: data, store, run and output roots, the catalog and the device.

Every entry point (the `simcast` command, the Prefect flows, the demo, torchrun workers) resolves them here:
an explicit argument wins, then the environment, then the default below (relative to the working directory).

    SIMCAST_DATA_ROOT    raw source files             ./data
    SIMCAST_STORE_ROOT   Zarr stores                  ./stores
    SIMCAST_RUNS_ROOT    training run folders         ./runs
    SIMCAST_OUTPUT_ROOT  forecasts, archives, reports ./outputs
    SIMCAST_CATALOG      catalog file(s) layered over the bundled catalog (several separated by ':')
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import data_catalog
from data_catalog import BUNDLED_ROOT, Catalog, DatasetEntry

from .errors import InputError, UsageError

ENVIRONMENT = {
    "data_root": ("SIMCAST_DATA_ROOT", "data"),
    "store_root": ("SIMCAST_STORE_ROOT", "stores"),
    "runs_root": ("SIMCAST_RUNS_ROOT", "runs"),
    "output_root": ("SIMCAST_OUTPUT_ROOT", "outputs"),
}
CATALOG_ENV = "SIMCAST_CATALOG"
RUN_NAME = re.compile(r"^(?P<name>.+)-(?P<stamp>\d{8}-\d{6})$")  # <data set>-YYYYmmdd-HHMMSS


@dataclass(frozen=True)
class Settings:
    data_root: Path
    store_root: Path
    runs_root: Path
    output_root: Path
    catalogs: tuple[Path, ...] = field(default_factory=tuple)  # user catalogs over the bundled one

    @classmethod
    def load(cls, **explicit: str | Path | None) -> "Settings":
        """Explicit values (None: not given) over the environment over the defaults; paths made absolute."""
        unknown = set(explicit) - set(ENVIRONMENT) - {"catalogs"}
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}")
        roots = {}
        for name, (env, default) in ENVIRONMENT.items():
            value = explicit.get(name) or os.environ.get(env) or default
            roots[name] = Path(value).expanduser().absolute()
        catalogs = explicit.get("catalogs")
        if catalogs is None:
            catalogs = [p for p in os.environ.get(CATALOG_ENV, "").split(os.pathsep) if p]
        elif isinstance(catalogs, (str, Path)):
            catalogs = [catalogs]
        return cls(**roots, catalogs=tuple(Path(p).expanduser().absolute() for p in catalogs))

    def with_roots(self, **roots: str | Path | None) -> "Settings":
        return replace(self, **{k: Path(v).absolute() for k, v in roots.items() if v is not None})

    def environment(self) -> dict[str, str]:
        """These settings as environment variables, for subprocesses (torchrun workers, flow runs)."""
        env = {ENVIRONMENT[name][0]: str(getattr(self, name)) for name in ENVIRONMENT}
        env[CATALOG_ENV] = os.pathsep.join(str(p) for p in self.catalogs)
        return env

    # ---- catalog --------------------------------------------------------------------------------------

    def catalog(self) -> Catalog:
        return data_catalog.load_catalog(*self.catalogs)

    def entry(self, name: str) -> DatasetEntry:
        return self.catalog()[name]

    def source_root(self, entry: DatasetEntry) -> Path:
        return BUNDLED_ROOT if entry.source.root == "bundled" else self.data_root

    def store_path(self, entry: DatasetEntry) -> Path:
        p = Path(entry.store).expanduser()
        return p if p.is_absolute() else self.store_root / p

    # ---- operational outputs --------------------------------------------------------------------------

    def archive_path(self, dataset: str) -> Path:
        """The forecast archive of a data set: every archived forecast, one Zarr store."""
        return self.output_root / "archive" / f"{dataset}.zarr"

    def verification_dir(self, dataset: str) -> Path:
        """Where `simcast verify` writes the verification of a data set's archive."""
        return self.output_root / "verification" / dataset

    # ---- run folders ----------------------------------------------------------------------------------

    def new_run_dir(self, dataset: str, now: dt.datetime | None = None) -> Path:
        stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        return self.runs_root / f"{dataset}-{stamp}"

    def run_dirs(self, dataset: str) -> list[Path]:
        """Run folders of a data set, oldest first (by their time stamp)."""
        if not self.runs_root.is_dir():
            return []
        found = [p for p in self.runs_root.iterdir()
                 if p.is_dir() and (m := RUN_NAME.match(p.name)) and m["name"] == dataset]
        return sorted(found, key=lambda p: RUN_NAME.match(p.name)["stamp"])

    def newest_checkpoint(self, dataset: str) -> Path:
        """best.pt of the newest run folder of a data set that has one."""
        for run in reversed(self.run_dirs(dataset)):
            if (run / "best.pt").is_file():
                return run / "best.pt"
        raise InputError(self.runs_root, f"no trained checkpoint for {dataset!r} (no {dataset}-<time>/best.pt); "
                                         "train first or name a checkpoint")


def resolve_device(name: str = "auto", local_rank: int | None = None):
    """`auto`, `cpu`, `cuda` or `cuda:N` as a torch device; a device this machine lacks is a usage error that says
    what to ask for instead."""
    import torch

    from simvp.trainer import DeviceError
    from simvp.trainer import resolve_device as to_device

    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = to_device(name, local_rank)
    except DeviceError:
        why = (f"torch {torch.__version__} is a CPU-only build" if torch.version.cuda is None
               else "no GPU is visible: driver, CUDA_VISIBLE_DEVICES")
        raise UsageError("device", f"{name!r} asked for, but CUDA is not available on this machine ({why}); use "
                                   "cpu, or auto to take a GPU only when there is one") from None
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise UsageError("device", f"{name!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s) "
                                   f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return device
