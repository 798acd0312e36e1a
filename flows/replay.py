"""Data arriving day by day, through the scheduled forecast flow: the operational loop, replayed on the bundled
samples.

    python -m flows.replay weather --work /tmp/replay --days 3
    python -m flows.replay traffic --work /tmp/replay-traffic --days 3

A work folder gets its own data, store, run and output roots and a catalog entry for the sample (`era5-live`,
`nybike-live`) whose files arrive one day at a time: the ERA5 sample's daily NetCDF files as they are, the NYBike
file cut into daily HDF5 files in the TaxiBJ layout. The first `start` days are there from the beginning; a model
is trained on them; then each day's file is added and the forecast flow runs, as its schedule would run it:
the store grows by one day through an append (never a rebuild), a forecast from the newest time is made and
archived, and the verification scores every archived forecast whose truth has arrived.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import xarray as xr
import yaml

from data_catalog import BUNDLED_ROOT, load_catalog
from pipelines.errors import USAGE_EXIT_CODE, USER_ERRORS, UsageError, exit_code, one_line
from pipelines.outputs import claim, ensure_writable, mark, owner_kind
from pipelines.specs import DEVICE


@dataclass(frozen=True)
class Sample:
    """A bundled sample replayed as daily files."""

    entry: str                  # the bundled catalog entry
    live: str                   # the replay's entry
    pattern: str                # daily files under the data root
    splits: dict                # fixed periods: an append never moves them, and no new day is training data
    start_days: int             # days present before the first arrival (the store must span a time chunk)


SAMPLES = {
    "weather": Sample("era5-uk-t2m", "era5-live", "era5/2m_temperature_*_0.25deg.nc",
                      {"train": {"start": "2019-03-01", "end": "2019-03-16"},
                       "validation": {"start": "2019-03-17", "end": "2019-03-20"},
                       "test": {"start": "2019-03-21", "end": "2019-03-31"}}, start_days=24),
    "traffic": Sample("nybike", "nybike-live", "nybike/NYBike_*_M14x8_T30_InOut.h5",
                      {"train": {"start": "2016-01-01", "end": "2016-02-15"},
                       "validation": {"start": "2016-02-16", "end": "2016-02-22"},
                       "test": {"start": "2016-02-23", "end": "2016-03-31"}}, start_days=60),
}


def daily_files(kind: str, folder: Path) -> list[Path]:
    """The sample's files, one per day, in arrival order (written into `folder` for the traffic sample)."""
    if kind == "weather":
        return sorted((BUNDLED_ROOT / "weather/era5_uk_t2m_0.25deg").glob("2m_temperature_*_0.25deg.nc"))
    return cut_taxibj_by_day(BUNDLED_ROOT / "traffic/NYBike_M14x8_T30_InOut.h5", folder)


def cut_taxibj_by_day(source: Path, folder: Path) -> list[Path]:
    """One TaxiBJ-layout HDF5 file per day (`data` (N, 2, H, W), `date` YYYYMMDDSS) from a longer one."""
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(source, "r") as f:
        data, date = f["data"][()], f["date"][()]
    days = np.array([d[:8] for d in date])
    out = []
    for day in np.unique(days):
        path = folder / f"NYBike_{day.decode()}_M14x8_T30_InOut.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=data[days == day])
            f.create_dataset("date", data=date[days == day])
        out.append(path)
    return out


def prepare(kind: str, work: Path) -> tuple[Sample, list[Path], dict]:
    """The work folder: its catalog and environment; returns the sample, the files still to arrive, the env."""
    sample = SAMPLES[kind]
    work = work.absolute()
    bundled = load_catalog()[sample.entry]
    entry = bundled.model_dump(mode="json", exclude={"name"}, exclude_none=True)
    entry.update(source={"pattern": sample.pattern}, splits=sample.splits, store=f"{sample.live}.zarr")
    entry.pop("holidays", None)
    (work / "catalog.yaml").parent.mkdir(parents=True, exist_ok=True)
    (work / "catalog.yaml").write_text(yaml.safe_dump({"datasets": {sample.live: entry}}, sort_keys=False))
    env = {"SIMCAST_DATA_ROOT": str(work / "data"), "SIMCAST_STORE_ROOT": str(work / "stores"),
           "SIMCAST_RUNS_ROOT": str(work / "runs"), "SIMCAST_OUTPUT_ROOT": str(work / "outputs"),
           "SIMCAST_CATALOG": str(work / "catalog.yaml")}
    files = daily_files(kind, work / "incoming")
    target = work / "data" / Path(sample.pattern).parent
    target.mkdir(parents=True, exist_ok=True)
    for f in files[: sample.start_days]:
        shutil.copy2(f, target / f.name)
    return sample, files[sample.start_days:], env


def arrive(sample: Sample, path: Path, work: Path) -> Path:
    """A day's file lands in the data folder (written beside it, then renamed: a reader never sees half a file)."""
    target = work.absolute() / "data" / Path(sample.pattern).parent / path.name
    tmp = target.with_name(f".{target.name}.part")
    shutil.copy2(path, tmp)
    os.replace(tmp, target)
    return target


def store_state(store: Path) -> dict:
    """What the loop watches in the store: its time steps, last time and how many appends built it."""
    ds = xr.open_zarr(store, consolidated=True)
    prov = json.loads(ds.attrs.get("provenance", "{}"))
    return {"time_steps": ds.sizes["time"], "last_time": pd.Timestamp(ds["time"].values[-1]),
            "appends": int(prov.get("appends", 0))}


def verified_init_times(verification: dict | None) -> int:
    """How many archived forecasts the forecast flow's verification step scored."""
    if not verification or not verification.get("verified"):
        return 0
    return int(verification["result"]["counts"]["verified_init_times"])


def verification_line(verification: dict | None) -> str:
    return verification["message"] if verification else "not verified"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the option and what to give instead, exit code 2."""

    def error(self, message: str):
        self.exit(USAGE_EXIT_CODE, f"error: {message} (see python -m flows.replay --help)\n")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m flows.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(SAMPLES), help="which sample is replayed")
    parser.add_argument("--work", type=Path, default=Path("outputs/replay"),
                        help="work folder: created, or one an earlier replay made (nothing else is written to)")
    parser.add_argument("--days", type=_count, default=3, help="days to replay after the first ones (>= 1)")
    parser.add_argument("--epochs", type=_count, default=2,
                        help="epochs of the model trained on the first days (>= 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> None:
    """Every option checked before anything is written: a UsageError or OutputError (one line)."""
    from pipelines.settings import resolve_device

    if not re.fullmatch(DEVICE, args.device):
        raise UsageError("device", f"{args.device!r} is not a device: use auto, cpu, cuda or cuda:N")
    resolve_device(args.device)
    claim(args.work, "replay")  # a user's folder (their own catalog.yaml, ...) is refused, never written to
    if args.work.exists():
        ensure_writable(args.work)


def own_work_folder(work: Path) -> None:
    ensure_writable(work)
    if owner_kind(work) != "replay":
        mark(work, "replay")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        check(args)
        own_work_folder(args.work)
        replay(args)
    except USER_ERRORS as e:
        if os.environ.get("SIMCAST_DEBUG"):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(exit_code(e))


def replay(args: argparse.Namespace) -> None:
    sample, incoming, env = prepare(args.kind, args.work)
    os.environ.update(env)
    from flows.forecast import taxibj_forecast, weatherbench_forecast
    from pipelines import ingest, train
    from pipelines.specs import IngestSpec, TrainSpec

    ingest.run(IngestSpec.from_catalog(sample.live), progress=True)
    outcome = train.run(TrainSpec.from_catalog(sample.live, epochs=args.epochs, device=args.device))
    print(f"trained on the first {sample.start_days} days: {outcome.best_path}")
    flow = weatherbench_forecast if args.kind == "weather" else taxibj_forecast
    for path in incoming[: args.days]:
        arrive(sample, path, args.work)
        result = flow(dataset=sample.live, device=args.device)
        state = store_state(Path(result["store"]))
        print(f"{path.name}: store {state['time_steps']} steps to {state['last_time']} (appended {state['appends']} times); "
              f"forecast archived in {result['archive']}; {verification_line(result['verification'])}; "
              f"report {result['report']}")


if __name__ == "__main__":
    main()
