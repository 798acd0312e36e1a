"""Appending one day to the store of the full WeatherBench layout, next to ingesting the same files in full.

Writes 40 yearly synthetic files in the exact WeatherBench 5.625 deg layout (1979-2018, hourly, 32 x 64: 350,640
steps, 2.9 GB of float32) unless they are there, ingests them in full, then adds one daily file at a time
(`2m_temperature_2019-01-0N_5.625deg.nc`, 24 steps) and runs `simcast ingest` in a fresh process after each,
which appends it. Finally the same files (40 years and the added days) are ingested in full into a second store,
and the appended store is compared with it. Reports the median append time, the full ingest time (into an
empty path: the removal of a previous store, which a rebuild also pays, is not counted) and their ratio. Times
are measured around `pipelines.ingest.run` inside the process, its modules imported, and separately for the
whole process (Python start and imports included).

    OMP_NUM_THREADS=1 python benchmarks/ingest_append.py --work /tmp/wb-append --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ingest_memory import CATALOG  # the same 40-year entry as the memory benchmark

CHILD = """
import json, sys, time
from pathlib import Path
from pipelines.ingest import append, run
from pipelines.specs import IngestSpec
from pipelines import outputs

phases = {}
def timed(module, name):
    real = getattr(module, name)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
    setattr(module, name, wrapper)
for name in ("_plan", "_linked_copy", "_extend", "_same_as_store"):
    timed(append, name)
timed(outputs, "_swap_into_place")

import distributed  # noqa: F401  (dask imports it on the first compute: a one-time cost, outside the timing)

overrides = json.loads(sys.argv[1])
if "store" in overrides:
    overrides["store"] = Path(overrides["store"])
t0 = time.perf_counter()
r = run(IngestSpec.from_catalog("wb-full", **overrides), progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "steps": r.summary["time_steps"], "appended": r.appended,
                  "appended_steps": r.summary.get("appended_steps"), "rebuilt": r.summary.get("rebuilt"),
                  "phases": {k: round(v, 3) for k, v in phases.items()}}))
"""


def child(env: dict, **overrides) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(overrides)], env=env, capture_output=True,
                         text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    print(result, file=sys.stderr)
    return result


def compare(appended: Path, full: Path) -> dict:
    """The appended store against the full ingest: every array but data whole, data in the chunks the appends
    wrote (the others are the very files of the first full ingest, linked), the attributes but provenance."""
    import numpy as np
    import zarr

    a, b = zarr.open_group(str(appended), mode="r"), zarr.open_group(str(full), mode="r")
    assert sorted(a.array_keys()) == sorted(b.array_keys())
    for name in a.array_keys():
        if name != "data":
            assert np.array_equal(a[name][...], b[name][...]), name
    data_a, data_b = a["data"], b["data"]
    assert data_a.shape == data_b.shape and data_a.chunks == data_b.chunks
    tail = 3 * data_a.chunks[0]
    assert np.array_equal(data_a[-tail:], data_b[-tail:])
    attrs_a, attrs_b = dict(a.attrs), dict(b.attrs)
    for attrs in (attrs_a, attrs_b):
        attrs.pop("provenance")
        attrs["summary"] = {k: v for k, v in json.loads(attrs["summary"]).items() if k != "store"}
    assert attrs_a == attrs_b
    return {"equal": True, "time_steps": int(data_a.shape[0]), "steps_per_chunk": int(data_a.chunks[0])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/simcast-wb-append"))
    p.add_argument("--first-year", type=int, default=1979)
    p.add_argument("--last-year", type=int, default=2018)
    p.add_argument("--repeats", type=int, default=5, help="days appended, one process each")
    args = p.parse_args()

    from pipelines import synth

    data = args.work / "data"
    folder = data / "2m_temperature"
    if not (folder / f"2m_temperature_{args.last_year}_5.625deg.nc").exists():
        t0 = time.perf_counter()
        for year in range(args.first_year, args.last_year + 1):
            synth.write_weatherbench(data, f"{year}-01-01", f"{year}-12-31")
        print(f"wrote synthetic files in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    for day in folder.glob(f"2m_temperature_{args.last_year + 1}-*_5.625deg.nc"):
        day.unlink()  # days added by an earlier run
    cat = args.work / "catalog.yaml"
    cat.write_text(CATALOG.format(root=data, store=args.work / "store.zarr"))
    env = {**os.environ, "SIMCAST_CATALOG": str(cat)}

    shutil.rmtree(args.work / "store.zarr", ignore_errors=True)  # full ingests build into an empty path:
    shutil.rmtree(args.work / "full.zarr", ignore_errors=True)   # no previous store to remove, untimed
    first = child(env, force=True)
    appends = []
    for i in range(args.repeats):
        day = f"{args.last_year + 1}-01-{i + 1:02d}"
        synth.write_weatherbench(data, day, day, layout=synth.WeatherLayout(files_per="day"))
        appends.append(child(env))
        if not appends[-1]["appended"]:
            raise SystemExit(f"expected an append, got a rebuild: {appends[-1]['rebuilt']}")
    full = child(env, force=True, store=str(args.work / "full.zarr"))
    check = compare(args.work / "store.zarr", args.work / "full.zarr")

    import dask
    import netCDF4
    import xarray
    import zarr

    median = statistics.median(r["seconds"] for r in appends)
    median_process = statistics.median(r["process_seconds"] for r in appends)
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                   f"load average {os.getloadavg()[0]:.1f}",
        "python": platform.python_version(), "dask": dask.__version__, "xarray": xarray.__version__,
        "zarr": zarr.__version__, "netCDF4": netCDF4.__version__,
        "years": args.last_year - args.first_year + 1, "steps_before": first["steps"],
        "appends": len(appends), "steps_per_append": appends[0]["appended_steps"],
        "append_seconds": [round(r["seconds"], 2) for r in appends],
        "median_append_seconds": round(median, 2),
        "median_append_process_seconds": round(median_process, 2),
        "append_phases_median": {k: statistics.median(r["phases"].get(k, 0.0) for r in appends)
                                 for k in appends[0]["phases"]},
        "first_full_ingest_seconds": round(first["seconds"], 1),
        "full_ingest_seconds": round(full["seconds"], 1),
        "ratio": round(median / full["seconds"], 4),
        "ratio_process": round(median_process / full["process_seconds"], 4),
        "check": check,
    }, indent=2))


if __name__ == "__main__":
    main()
