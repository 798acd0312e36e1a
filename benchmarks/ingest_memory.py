"""Peak memory and wall time of ingesting the full WeatherBench 5.625 deg single-variable layout.

Writes 40 yearly synthetic files in the exact WeatherBench layout (1979-2018, hourly, 32 x 64; 350,640
time steps, 2.9 GB of float32), then ingests them in a fresh process, repeatedly, and reports the median
wall time and peak resident memory of that process.

    python benchmarks/ingest_memory.py --work /tmp/wb-full --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CATALOG = """
datasets:
  wb-full:
    kind: weatherbench
    source: {{pattern: "{root}/2m_temperature/2m_temperature_*_5.625deg.nc"}}
    variables: [{{name: t2m}}]
    time_step: 1h
    splits:
      train: {{start: 2010-01-01, end: 2015-12-31}}
      validation: {{start: 2016-01-01, end: 2016-12-31}}
      test: {{start: 2017-01-01, end: 2018-12-31}}
    window: {{input: 12, output: 12}}
    grid: [32, 64]
    store: {store}
"""

CHILD = """
import json, resource, sys, time
from pipelines.ingest import run
from pipelines.specs import IngestSpec
t0 = time.perf_counter()
r = run(IngestSpec.from_catalog("wb-full", force=True), progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "steps": r.summary["time_steps"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/simcast-wb-full"))
    p.add_argument("--first-year", type=int, default=1979)
    p.add_argument("--last-year", type=int, default=2018)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from pipelines import synth

    data = args.work / "data"
    if not (data / "2m_temperature" / f"2m_temperature_{args.last_year}_5.625deg.nc").exists():
        t0 = time.perf_counter()
        for year in range(args.first_year, args.last_year + 1):
            synth.write_weatherbench(data, f"{year}-01-01", f"{year}-12-31")
        print(f"wrote synthetic files in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cat = args.work / "catalog.yaml"
    cat.write_text(CATALOG.format(root=data, store=args.work / "store.zarr"))
    env = {**os.environ, "SIMCAST_CATALOG": str(cat)}
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(runs[-1], file=sys.stderr)
    import dask, xarray, zarr  # noqa: E401

    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "python": platform.python_version(), "dask": dask.__version__, "xarray": xarray.__version__,
        "zarr": zarr.__version__, "steps": runs[0]["steps"], "repeats": len(runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }, indent=2))


if __name__ == "__main__":
    main()
