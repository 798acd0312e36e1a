"""Samples per second of the window loaders: in memory, streamed from Zarr, and an OpenSTL-style reference.

Writes synthetic WeatherBench files at 1.40625 deg (128 x 256, hourly; the resolution whose t2m alone is 46 GB
over 40 years) for the given days, ingests them, then times one training epoch's first `--batches` batches
of each loader, in interleaved repeats (a, b, c, a, b, c, ...) so that the machine's load hits all alike:

- in memory: `Windows(in_memory=True).batches(...)`, the normalized split in one tensor, gathered by index;
- streamed: `Windows(in_memory=False).batches(...)`, the chunk-aware order read from Zarr in background threads;
- reference: what OpenSTL's WeatherBench loader does, written here: the normalized split as a NumPy array,
  one sample per `__getitem__` (`torch.tensor(array[start + offsets])`), a torch DataLoader with shuffling and
  default collation, no workers (one thread, like the rest).

Each batch is consumed by summing it (so a lazily produced batch is really produced). Reports, per loader, the
median wait for the first batch (the streamed loader reads the blocks its first batch needs then) and the median
samples/s over the `--batches` batches after it, with the streamed / in-memory and streamed / reference ratios.

    OMP_NUM_THREADS=1 python benchmarks/window_throughput.py --work /tmp/simcast-wb140 --days 365 --batches 100 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

CATALOG = """
datasets:
  wb-140:
    kind: weatherbench
    source: {{pattern: "{root}/2m_temperature/2m_temperature_*_1.40625deg.nc"}}
    variables: [{{name: t2m}}]
    time_step: 1h
    splits:
      train: {{rest: true}}
      validation: {{last: 5D}}
      test: {{last: 5D}}
    window: {{input: 12, output: 12}}
    grid: [128, 256]
    store: {store}
"""


def reference_loader(windows, batch_size: int, seed: int):
    """OpenSTL's way, in our words: per-sample indexing of an in-memory NumPy array, DataLoader collation."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset

    from pipelines.windows import normalize

    frames = normalize(windows.ds["data"][windows.lo:windows.hi].values.astype("float32"), windows.stats,
                       windows.method)
    starts = windows.starts - windows.lo
    t_in, length = windows.spec.input, windows.spec.length

    class PerSample(Dataset):
        def __len__(self):
            return len(starts)

        def __getitem__(self, i):
            rows = starts[i] + np.arange(length)
            return torch.tensor(frames[rows[:t_in]]), torch.tensor(frames[rows[t_in:]])

    return DataLoader(PerSample(), batch_size=batch_size, shuffle=True, num_workers=0,
                      generator=torch.Generator().manual_seed(seed))


def timed(batches, n: int, batch_size: int) -> tuple[float, float]:
    """(seconds to the first batch, samples/s over the n batches after it) of an iterable of (x, y)."""
    t0 = time.perf_counter()
    seen = 0
    total = 0.0
    for x, y in batches:
        total += float(x.sum()) + float(y.sum())
        if seen == 0:
            t1 = time.perf_counter()
        seen += 1
        if seen == n + 1:
            break
    return t1 - t0, n * batch_size / (time.perf_counter() - t1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/simcast-wb140"))
    p.add_argument("--days", type=int, default=365, help="days of hourly 128 x 256 data (365: 1.1 GB of float32, two shuffle groups)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 128])
    p.add_argument("--batches", type=int, default=40, help="batches timed per measurement")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from pipelines import synth
    from pipelines.ingest import run
    from pipelines.specs import IngestSpec
    from pipelines.windows import Windows

    data = args.work / "data"
    end = (pd.Timestamp("2018-01-01") + pd.Timedelta(days=args.days - 1)).strftime("%Y-%m-%d")
    marker = args.work / f"written-{args.days}"
    if not marker.exists():
        t0 = time.perf_counter()
        synth.write_weatherbench(data, "2018-01-01", end, resolution=1.40625)
        marker.write_text("")
        print(f"wrote {args.days} days of synthetic 1.40625 deg files in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
    cat = args.work / "catalog.yaml"
    cat.write_text(CATALOG.format(root=data, store=args.work / "store.zarr"))
    os.environ["SIMCAST_CATALOG"] = str(cat)
    store = run(IngestSpec.from_catalog("wb-140"), progress=False).store

    memory = Windows(store, "train", in_memory=True)
    stream = Windows(store, "train", in_memory=False)
    frame_mb = 4 * 128 * 256 / 2**20
    results = {}
    for batch_size in args.batch_sizes:
        rates = {"in_memory": [], "streamed": [], "reference": []}
        first = {k: [] for k in rates}
        for r in range(args.repeats):
            n = args.batches
            order = memory.epoch_order(r, 0)
            runs = {"in_memory": lambda: memory.batches(list(order.split(batch_size))[:n + 1]),
                    "streamed": lambda: stream.batches(list(stream.epoch_order(r, 0).split(batch_size))[:n + 1]),
                    "reference": lambda: reference_loader(memory, batch_size, r)}
            for name, make in runs.items():
                wait, rate = timed(make(), n, batch_size)
                first[name].append(wait)
                rates[name].append(rate)
            print(batch_size, {k: round(v[-1], 1) for k, v in rates.items()}, file=sys.stderr)
        med = {k: statistics.median(v) for k, v in rates.items()}
        results[batch_size] = {
            **{f"{k}_samples_per_s": round(v, 1) for k, v in med.items()},
            **{f"{k}_first_batch_s": round(statistics.median(v), 3) for k, v in first.items()},
            "streamed_over_in_memory": round(med["streamed"] / med["in_memory"], 3),
            "streamed_over_reference": round(med["streamed"] / med["reference"], 3),
        }
    import numpy
    import xarray
    import zarr

    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
        "xarray": xarray.__version__, "zarr": zarr.__version__,
        "store": {"time_steps": int(memory.ds.sizes["time"]), "train_windows": len(memory),
                  "chunk_frames": stream._read.chunk, "block_starts": stream.block,
                  "group_blocks": stream.group_blocks, "frame_mb": round(frame_mb, 3)},
        "batches_timed": args.batches, "repeats": args.repeats, "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
