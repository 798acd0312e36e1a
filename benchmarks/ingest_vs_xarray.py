"""`simcast ingest` next to a plain `xr.open_mfdataset(...).to_zarr(...)` of the same files.

Writes synthetic yearly files in the exact WeatherBench 5.625 deg layout (hourly, 32 x 64) for the given years,
then, in fresh processes and interleaved (ingest, plain, ingest, plain, ...), times a full ingest (every check,
the training statistics, the atomic swap) and the plain copy (no checks, no statistics; rechunked to the
store's 256 steps per chunk, which Zarr needs, as the files' own chunks are uneven; default codecs), and
records each process's peak resident memory, whole and above its footprint after its imports (simcast's
imports include torch, about 220 MB). Each writes into an empty path (the removal of a previous store is not
timed). Reports medians and the ingest / plain ratios.

    OMP_NUM_THREADS=1 python benchmarks/ingest_vs_xarray.py --work /tmp/wb-5y --first-year 2014 --last-year 2018
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
from pathlib import Path

from ingest_memory import CATALOG  # the same WeatherBench entry (train 2010-2015, validation 2016, test 2017-18)

INGEST = """
import json, resource, time
from pipelines.ingest import run
from pipelines.specs import IngestSpec
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
run(IngestSpec.from_catalog("wb-full"), progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": peak, "work_rss_mb": peak - base}))
"""

PLAIN = """
import json, resource, sys, time
import xarray as xr
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
ds = xr.open_mfdataset(sys.argv[1], combine="by_coords").chunk({"time": 256, "lat": -1, "lon": -1})
ds.to_zarr(sys.argv[2], mode="w", zarr_format=3)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": peak, "work_rss_mb": peak - base}))
"""


def child(code: str, env: dict, *args: str, cwd: Path | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True,
                         cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/simcast-wb-5y"))
    p.add_argument("--first-year", type=int, default=2014)
    p.add_argument("--last-year", type=int, default=2018)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--also", type=Path, help="another simcast checkout whose ingest joins the comparison "
                                              "(e.g. a worktree of an earlier commit)")
    args = p.parse_args()

    from pipelines import synth

    data = args.work / "data"
    for year in range(args.first_year, args.last_year + 1):
        if not (data / "2m_temperature" / f"2m_temperature_{year}_5.625deg.nc").exists():
            synth.write_weatherbench(data, f"{year}-01-01", f"{year}-12-31")
    cat = args.work / "catalog.yaml"
    cat.write_text(CATALOG.format(root=data, store=args.work / "store.zarr"))
    env = {**os.environ, "SIMCAST_CATALOG": str(cat)}
    pattern = str(data / "2m_temperature" / "2m_temperature_*_5.625deg.nc")
    plain_store = args.work / "plain.zarr"
    runs: dict[str, list[dict]] = {"ingest": [], "plain": []}
    if args.also:
        runs["ingest_also"] = []
    store = args.work / "store.zarr"
    for _ in range(args.repeats):
        shutil.rmtree(store, ignore_errors=True)  # every copy writes into an empty path: no removal is timed
        runs["ingest"].append(child(INGEST, env))
        if args.also:
            shutil.rmtree(store, ignore_errors=True)
            also_env = {**env, "PYTHONPATH": str(args.also.absolute())}
            runs["ingest_also"].append(child(INGEST, also_env, cwd=args.also))
        shutil.rmtree(plain_store, ignore_errors=True)
        runs["plain"].append(child(PLAIN, env, pattern, str(plain_store)))
        print({k: v[-1] for k, v in runs.items()}, file=sys.stderr)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "peak_rss_mb", "work_rss_mb")}
           for k, v in runs.items()}
    import dask
    import xarray
    import zarr

    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "python": platform.python_version(), "dask": dask.__version__, "xarray": xarray.__version__,
        "zarr": zarr.__version__, "years": [args.first_year, args.last_year], "repeats": args.repeats,
        "median": med,
        "ingest_over_plain_seconds": round(med["ingest"]["seconds"] / med["plain"]["seconds"], 3),
        "ingest_over_plain_peak_rss": round(med["ingest"]["peak_rss_mb"] / med["plain"]["peak_rss_mb"], 3),
        "ingest_over_plain_work_rss": round(med["ingest"]["work_rss_mb"] / med["plain"]["work_rss_mb"], 3),
        **({"also": str(args.also), "also_over_plain_seconds":
            round(med["ingest_also"]["seconds"] / med["plain"]["seconds"], 3)} if args.also else {}),
    }, indent=2))


if __name__ == "__main__":
    main()
