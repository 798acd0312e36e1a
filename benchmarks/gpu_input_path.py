"""The trainer's input path into the device alone, against the training rate of SimVP on the same windows.

Writes (once per --work and --days) a synthetic year of hourly WeatherBench t2m at 1.40625 deg (128 x 256, as
benchmarks/window_throughput.py does), ingests it, then times the batches the trainer takes (`iter_batches` over
the epoch's order, each batch copied to the device as the training loop copies it), streamed from Zarr and in
memory, and training steps of SimVP (the weatherbench-t2m preset's model on 128 x 256; bf16 autocast and
channels_last on CUDA, as the trainer runs) on the same batches. Prints one JSON line last.

    python benchmarks/gpu_input_path.py --device cuda --days 365 --batch-size 16 --batches 50
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from window_throughput import CATALOG  # noqa: E402  (the same synthetic data set)


def synthetic_store(work: Path, days: int) -> Path:
    from pipelines import synth
    from pipelines.ingest import run
    from pipelines.specs import IngestSpec

    data = work / "data"
    marker = work / f"written-{days}"
    if not marker.exists():
        end = (pd.Timestamp("2018-01-01") + pd.Timedelta(days=days - 1)).strftime("%Y-%m-%d")
        t0 = time.perf_counter()
        synth.write_weatherbench(data, "2018-01-01", end, resolution=1.40625)
        marker.write_text("")
        print(f"wrote {days} days of 1.40625 deg files in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    catalog = work / "catalog.yaml"
    catalog.write_text(CATALOG.format(root=data, store=work / "store.zarr"))
    os.environ["SIMCAST_CATALOG"] = str(catalog)
    return run(IngestSpec.from_catalog("wb-140"), progress=False).store


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def input_rate(windows, batch_size: int, batches: int, device) -> dict:
    """Samples/s of the trainer's batches after the first one, and the wait for the first."""
    from simvp.trainer import epoch_order, iter_batches

    order = epoch_order(windows, 0, 0)
    index = list(order.split(batch_size))[: batches + 1]
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(iter_batches(windows, index)):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # as the training loop does
        if i == 0:
            sync(device)
            t1 = time.perf_counter()
    sync(device)
    done = len(index) - 1
    return {"samples_per_s": round(done * batch_size / (time.perf_counter() - t1), 1),
            "first_batch_s": round(t1 - t0, 3), "batches": done}


def training_rate(windows, batch_size: int, steps: int, model_overrides: dict, device) -> dict:
    """Samples/s of training steps (forward, loss, backward, AdamW) of SimVP on one batch of these windows."""
    import torch

    import simvp
    from data_catalog.presets import load_preset
    from simvp.trainer import training_loss

    config = {**load_preset("weatherbench-t2m-5.625deg").model, **model_overrides, "in_shape": windows.shape}
    torch.manual_seed(0)
    model = simvp.SimVP(simvp.SimVPConfig(**config)).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model.to(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = windows.batch(torch.arange(batch_size))
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    def step():
        with autocast():
            pred = model(x)
        loss, _ = training_loss(pred, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # cuDNN autotuning, allocations
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    return {"samples_per_s": round(batch_size / seconds, 1), "steps": steps,
            "parameters": sum(p.numel() for p in model.parameters()),
            "peak_gpu_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
            "path": "bf16 autocast + channels_last, not compiled" if cuda else "fp32 (CPU)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--work", type=Path, default=Path("/tmp/simcast-wb140"))
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=50, help="batches timed after the first")
    p.add_argument("--model-steps", type=int, default=10)
    p.add_argument("--model", default="{}", help="JSON overrides of the preset's model (smaller for dry runs)")
    p.add_argument("--prepare-only", action="store_true", help="write and ingest the data, measure nothing")
    args = p.parse_args()
    if args.prepare_only:
        print(f"prepared {synthetic_store(args.work, args.days)}")
        return

    import torch

    from pipelines.settings import resolve_device
    from pipelines.windows import Windows

    device = resolve_device(args.device)
    store = synthetic_store(args.work, args.days)
    found = {"grid": [128, 256], "days": args.days, "batch_size": args.batch_size, "device": str(device)}
    streamed = Windows(store, "train", device=device, in_memory=False)
    found["train_windows"] = len(streamed)
    found["streamed"] = input_rate(streamed, args.batch_size, args.batches, device)
    memory = Windows(store, "train", device=device, in_memory=True)
    found["in_memory"] = input_rate(memory, args.batch_size, args.batches, device)
    found["training"] = training_rate(memory, args.batch_size, max(1, args.model_steps), json.loads(args.model),
                                      device)
    del memory
    if device.type == "cuda":
        torch.cuda.empty_cache()
    found["input_over_training"] = round(found["streamed"]["samples_per_s"] / found["training"]["samples_per_s"], 3)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
