"""Evaluation: the model next to persistence, the previous day and climatology, on the same samples, in physical
units, overall and per lead time.

    metrics, info, paths = pipelines.evaluate.run(EvaluateSpec.from_catalog("era5-uk-t2m", checkpoint=best))

Beyond the trained output length (`lead_hours`), the model is rolled out exactly as a forecast is, and every
lead is scored next to the same baselines.

External forecasts (`--external NAME=URL`, WeatherBench2's forecast layout: external.py) are scored beside them;
every forecaster is then scored on the samples whose init times (the window's last input time) the external
forecasts hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from ..checkpoints import load_for_store, window_spec
from ..errors import InputError
from ..forecast import horizon_steps, model_predictor
from ..outputs import claim, ensure_writable, write_atomic
from ..settings import resolve_device
from ..specs import EvaluateSpec, parse_external
from ..store import open_store, physical_floor, properties, reading
from ..timeaxis import ns
from ..timefmt import iso_minutes
from ..windows import Windows, denormalize
from .baselines import Baselines
from .external import External, open_external
from .metrics import MetricAccumulator, json_safe

FORECASTERS = ("model", "persistence", "previous_day", "climatology")


def _accumulator(w: Windows) -> MetricAccumulator:
    ds = w.ds
    lat = ds["lat"].values.copy() if "lat" in ds.dims else None
    image = bool(properties(ds).get("image_metrics")) and min(ds["data"].shape[2:]) >= 7
    scale = (w.stats["min"], w.stats["max"]) if properties(ds).get("image_metrics") else None
    return MetricAccumulator(w.spec.output, w.channels, lat=lat, scale=scale, image_metrics=image, device=w.device)


def clamp_physical(x: torch.Tensor, floor: float | None) -> torch.Tensor:
    return x if floor is None else x.clamp_min(floor)


def _restrict(w: Windows, samples: np.ndarray, external: list[External]) -> tuple[np.ndarray, np.ndarray]:
    """The samples (and their init times, ns) whose init times every external forecast holds; one line naming
    the forecast when none is left."""
    init_ns = ns(w.times[w.starts[samples] + w.spec.input - 1])
    for ext in external:
        keep = ext.covers(init_ns)
        if not keep.any():
            have = np.sort(ext.init_ns)
            theirs = (f"{have.size} init times {iso_minutes(pd.Timestamp(int(have[0])))} .. "
                      f"{iso_minutes(pd.Timestamp(int(have[-1])))}" if have.size else "no init times")
            raise InputError(ext.url, f"no init time in common with the {w.split} split's {init_ns.size} samples "
                                      f"(init times {iso_minutes(pd.Timestamp(int(init_ns[0])))} .. "
                                      f"{iso_minutes(pd.Timestamp(int(init_ns[-1])))}); it has {theirs}")
        samples, init_ns = samples[keep], init_ns[keep]
    return samples, init_ns


def evaluate(w: Windows, predict: Callable, batch_size: int = 64, progress: bool = True,
             external: list[External] = ()) -> tuple[dict, dict]:
    """Score `predict` (normalized x, sample index -> normalized forecast (B, T_out, C, H, W)) and the baselines
    on every sample of `w` whose previous-day frames exist (and, with external forecasts, whose init time each of
    them holds: then they are scored too, by their names). Returns ({forecaster: result}, info)."""
    base = Baselines(w)
    samples = base.eligible()
    if samples.size == 0:
        raise InputError(w.ds.encoding.get("source", "store"),
                         f"the {w.split} split has no complete window of {w.spec.length} steps with its "
                         "previous-day frames")
    eligible = int(samples.size)
    samples, init_ns = _restrict(w, samples, list(external))
    accs = {name: _accumulator(w) for name in (*FORECASTERS, *(e.name for e in external))}
    floor = physical_floor(w.ds)
    n_ch = len(w.channels)
    starts = range(0, samples.size, batch_size)
    batches = w.batches([torch.from_numpy(samples[s:s + batch_size]) for s in starts])  # read ahead
    for start, (x, y) in zip(tqdm(starts, desc=f"evaluate {w.split}", disable=not progress, unit="batch"), batches):
        index = samples[start:start + batch_size]
        inits = init_ns[start:start + batch_size]
        with torch.no_grad():
            pred = predict(x, index)[:, :, :n_ch].float()
        truth = denormalize(y, w.stats, w.method)
        last = denormalize(x[:, -1, :n_ch], w.stats, w.method)
        clim = base.climatology(index)
        forecasts = {
            "model": clamp_physical(denormalize(pred, w.stats, w.method), floor),
            "persistence": base.persistence(last),
            "previous_day": base.previous_day(index),
            "climatology": clim,
        }
        for ext in external:
            forecasts[ext.name] = torch.from_numpy(ext.take(inits)).to(w.device)
        for name, f in forecasts.items():
            accs[name].update(f, truth, climatology=clim if "lat" in w.ds.dims else None)
    t0 = w.times[w.starts[samples] + w.spec.input - 1]
    info = {
        "split": w.split,
        "samples": int(samples.size),
        "windows_in_split": len(w),
        "first_init_time": t0[0].isoformat(),
        "last_init_time": t0[-1].isoformat(),
        "input": w.spec.input,
        "output": w.spec.output,
        "time_step": w.ds.attrs["time_step"],
        "units": {c: str(u) for c, u in zip(w.channels, w.ds["units"].values)},
    }
    if external:
        info["external"] = {e.name: {"url": e.url, "init_times": int(e.init_ns.size)} for e in external}
        info["samples_without_external"] = eligible  # before keeping the init times the external forecasts hold
    return {name: a.result() for name, a in accs.items()}, info


def metrics_dataset(metrics: dict, info: dict) -> xr.Dataset:
    """Metrics by lead time as a small dataset: dims (forecaster, lead_time)."""
    names = list(metrics)
    step = pd.Timedelta(info["time_step"])
    leads = pd.to_timedelta(np.arange(1, info["output"] + 1) * step)
    keys = list(metrics[names[0]]["by_lead"])
    data = {k: (("forecaster", "lead_time"), np.array([metrics[n]["by_lead"][k] for n in names], dtype="float64"))
            for k in keys}
    data.update({f"{k}_overall": (("forecaster",), np.array([metrics[n][k] for n in names], dtype="float64"))
                 for k in keys})
    ds = xr.Dataset(data, coords={"forecaster": names, "lead_time": leads})
    ds.attrs = {"convention": metrics[names[0]]["convention"],
                **{k: json.dumps(v) if isinstance(v, (dict, list)) else int(v) if isinstance(v, bool) else v
                   for k, v in info.items() if v is not None}}
    return ds


def write_metrics(metrics: dict, info: dict, out_dir: str | Path) -> dict[str, Path]:
    """One evaluation folder, replaced whole: metrics.json (per forecaster), evaluation.json (what was scored),
    metrics.nc (by lead)."""
    out_dir = Path(out_dir)
    names = {"metrics": "metrics.json", "info": "evaluation.json", "netcdf": "metrics.nc"}

    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / names["metrics"]).write_text(json.dumps(json_safe(metrics), indent=2))
        (tmp / names["info"]).write_text(json.dumps(info, indent=2))
        metrics_dataset(metrics, info).to_netcdf(tmp / names["netcdf"], engine="netcdf4")

    write_atomic(out_dir, build, "evaluation")
    return {k: out_dir / v for k, v in names.items()}


def run(spec: EvaluateSpec, progress: bool = True) -> tuple[dict, dict, dict[str, Path]]:
    """Score a checkpoint on a split of its store next to the baselines; write the evaluation folder."""
    claim(spec.out, "evaluation")
    ensure_writable(spec.out.parent)
    dev = resolve_device(spec.device)
    ds = open_store(spec.store)
    model, ckpt = load_for_store(spec.checkpoint, ds, spec.store)
    model.to(dev)
    trained = window_spec(ckpt)
    steps = horizon_steps(spec.lead_hours, trained, ds, "lead_hours")
    w_spec = trained.model_copy(update={"output": steps})
    lead_ns = np.arange(1, steps + 1, dtype=np.int64) * pd.Timedelta(ds.attrs["time_step"]).value
    external = []
    try:
        for text in spec.external:
            name, url = parse_external(text)
            external.append(open_external(name, url, ds, lead_ns))
        with reading(spec.store):
            w = Windows(ds, spec.split, w_spec, device=dev)
            predict = model_predictor(model, w, steps, dev)
            metrics, info = evaluate(w, predict, spec.batch_size, progress, external)
    finally:
        for ext in external:
            ext.close()
    info.update({"dataset": spec.dataset, "checkpoint": str(spec.checkpoint), "store": str(spec.store),
                 "best_epoch": ckpt.get("state", {}).get("best_epoch"), "trained_output": trained.output,
                 "rollout": steps > trained.output})
    hours = pd.Timedelta(ds.attrs["time_step"]).total_seconds() / 3600
    for result in metrics.values():  # each forecaster's series carries its lead times (plots, tables, reports)
        result["lead_hours"] = [round((k + 1) * hours, 6) for k in range(steps)]
        result["trained_hours"] = round(trained.output * hours, 6)
    return metrics, info, write_metrics(metrics, info, spec.out)
