"""Scoring at the scale of the published tables: two test years of hourly 5.625 deg data (2017-2018, about 17,500
init times x 12 leads) for a model and every reference forecast, with the block bootstrap, regions (WeatherBench2's
13 on this global grid) and the scorecard. Reports the wall time of each phase and the peak resident memory.

The model is a stand-in that costs nothing (the last input frame plus a constant): this measures scoring, not
inference (benchmarks/model_throughput.py measures the model).

    python benchmarks/scoring_scale.py --work /tmp/simcast-scoring --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

CATALOG = """
datasets:
  wb-score:
    kind: weatherbench
    source: {{pattern: "{root}/2m_temperature/2m_temperature_*_5.625deg.nc"}}
    variables: [{{name: t2m}}]
    time_step: 1h
    splits:
      train: {{start: 2015-01-01, end: 2016-06-30}}
      validation: {{start: 2016-07-01, end: 2016-12-31}}
      test: {{start: 2017-01-01, end: 2018-12-31}}
    window: {{input: 12, output: 12}}
    grid: [32, 64]
    store: {store}
"""

CHILD = """
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from pipelines.evaluate import scored_samples, window_batches
from pipelines.scoring import ModelForecast, Room, results
from pipelines.store import open_store
from pipelines.windows import Windows, WindowSpec, denormalize
ds = open_store(sys.argv[2])
w = Windows(ds, "test", WindowSpec(input=12, output=12))
times = {}
t = time.perf_counter()
room = Room(ds, np.arange(1, 13))
times["setup (climatology, fitted forecast, regions)"] = time.perf_counter() - t
model = ModelForecast(lambda x, i: denormalize(x[:, -1:, :1].expand(-1, 12, -1, -1, -1) + 0.01, w.stats, w.method),
                      None)
forecasters = [model, *room.references]
samples, init_ns = scored_samples(w, room, forecasters)
t = time.perf_counter()
scores = room.score(forecasters, window_batches(w, room, samples, init_ns, 256), init_ns)
times["scoring loop (read, forecast, tally)"] = time.perf_counter() - t
t = time.perf_counter()
out = scores.dataset()
times["dataset + bootstrap (1000 resamples)"] = time.perf_counter() - t
t = time.perf_counter()
r = results(out)
times["results (JSON view)"] = time.perf_counter() - t
print(json.dumps({"init_times": int(samples.size), "leads": 12, "regions": len(out.region),
                  "forecasters": len(forecasters), "metrics": len(room.metrics), "seconds": times,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "model_rmse_weighted": r["model"]["rmse_weighted"]}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/simcast-scoring"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    from pipelines import synth
    from pipelines.ingest import run as ingest
    from pipelines.specs import IngestSpec

    data, store = args.work / "data", args.work / "store.zarr"
    if not (data / "2m_temperature" / "2m_temperature_2018_5.625deg.nc").exists():
        for year in range(2015, 2019):
            synth.write_weatherbench(data, f"{year}-01-01", f"{year}-12-31")
    cat = args.work / "catalog.yaml"
    cat.write_text(CATALOG.format(root=data, store=store))
    env = {**os.environ, "SIMCAST_CATALOG": str(cat), "OMP_NUM_THREADS": str(args.threads)}
    os.environ["SIMCAST_CATALOG"] = str(cat)
    if not store.exists():
        ingest(IngestSpec.from_catalog("wb-score"), progress=False)
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.threads), str(store)], env=env,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(runs[-1], file=sys.stderr)
    import torch
    import xarray
    phases = runs[0]["seconds"].keys()
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "python": platform.python_version(), "torch": torch.__version__, "xarray": xarray.__version__,
        "threads": args.threads, "repeats": len(runs), "init_times": runs[0]["init_times"],
        "regions": runs[0]["regions"], "forecasters": runs[0]["forecasters"], "metrics": runs[0]["metrics"],
        "median_seconds": {k: round(statistics.median(r["seconds"][k] for r in runs), 2) for k in phases},
        "median_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs)),
    }, indent=2))


if __name__ == "__main__":
    main()
