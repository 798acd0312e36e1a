"""Evaluation: the model next to persistence, the previous day, climatology and the fitted linear forecast (and any
external forecast), on the same samples, through the scoring room (pipelines/scoring).

    metrics, info, paths = pipelines.evaluate.run(EvaluateSpec.from_catalog("era5-uk-t2m", checkpoint=best))

A sample is a window of the split; its init time is the window's last input time, its leads the evaluated lead
times. Beyond the trained output length (`lead_hours`) the model is rolled out exactly as a forecast is. Every
forecaster is scored on the samples every one of them has a forecast for (the previous day's frames, yesterday's
frame for the fitted forecast, the init times an external forecast holds).
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

from data_catalog.schema import Scoring
from ..checkpoints import load_for_store, window_spec
from ..errors import InputError
from ..outputs import claim, ensure_writable, write_atomic
from ..predict import horizon_steps, model_predictor
from ..scoring import (BASELINES, Batch, ExternalForecast, ModelForecast, Room, check_reference, json_safe,
                       main_metric, results)
from ..settings import resolve_device
from ..specs import EvaluateSpec, parse_external
from ..store import open_store, physical_floor, reading
from ..timeaxis import ns
from ..timefmt import iso_minutes
from ..windows import Windows, denormalize
from .external import External, open_external


def _no_common_init(ext: External, init_ns: np.ndarray, split: str) -> InputError:
    have = np.sort(ext.init_ns)
    theirs = (f"{have.size} init times {iso_minutes(pd.Timestamp(int(have[0])))} .. "
              f"{iso_minutes(pd.Timestamp(int(have[-1])))}" if have.size else "no init times")
    return InputError(ext.url, f"no init time in common with the {split} split's {init_ns.size} samples "
                               f"(init times {iso_minutes(pd.Timestamp(int(init_ns[0])))} .. "
                               f"{iso_minutes(pd.Timestamp(int(init_ns[-1])))}); it has {theirs}")


def window_batches(w: Windows, room: Room, samples: np.ndarray, init_ns: np.ndarray, batch_size: int):
    """(Batch, truth in physical units) for the given samples of `w`, read ahead; every lead of a window scored."""
    starts = range(0, samples.size, batch_size)
    loaded = w.batches([torch.from_numpy(samples[s:s + batch_size]) for s in starts])
    for s, (x, y) in zip(starts, loaded):
        rows = np.arange(s, min(s + batch_size, samples.size))
        batch = Batch(rows, init_ns[rows], room.valid_ns(init_ns[rows]), np.ones((rows.size, w.spec.output), bool),
                      inputs=x, samples=samples[rows])
        yield batch, denormalize(y, w.stats, w.method)


def scored_samples(w: Windows, room: Room, forecasters, external=()) -> tuple[np.ndarray, np.ndarray]:
    """The samples of `w` every forecaster has a forecast for, and their init times (ns)."""
    all_init = ns(w.times[w.starts + w.spec.input - 1]) if len(w) else np.zeros(0, np.int64)
    for ext in external:
        if len(w) and not ext.covers(all_init).any():
            raise _no_common_init(ext, all_init, w.split)
    keep = room.available(forecasters, all_init).all(axis=1) if len(w) else np.zeros(0, bool)
    if not keep.any():
        raise InputError(w.ds.encoding.get("source", "store"),
                         f"the {w.split} split has no complete window of {w.spec.length} steps with the frames its "
                         "reference forecasts need (the same hours a day earlier)")
    return np.flatnonzero(keep), all_init[keep]


def evaluate(w: Windows, predict: Callable, batch_size: int = 64, progress: bool = True,
             external: list[External] = (), scoring: Scoring | None = None,
             reference: str | None = None) -> tuple[dict, dict, xr.Dataset]:
    """Score `predict` (normalized x, sample indices -> normalized forecast (B, T_out, C, H, W)) next to the
    reference forecasts (and external ones, by their names) on every sample of `w` they all have.
    Returns (results per forecaster, info, the scores dataset)."""
    room = Room(w.ds, np.arange(1, w.spec.output + 1), w.device, scoring)
    n_ch = len(w.channels)

    def physical(x, index):
        return denormalize(predict(x, index)[:, :, :n_ch].float(), w.stats, w.method)

    externals = [ExternalForecast(e, w.device) for e in external]
    forecasters = [ModelForecast(physical, physical_floor(w.ds)), *room.references, *externals]
    samples, init_ns = scored_samples(w, room, forecasters, external)
    with tqdm(total=samples.size, desc=f"evaluate {w.split}", disable=not progress, unit="sample") as bar:
        scores = room.score(forecasters, window_batches(w, room, samples, init_ns, batch_size), init_ns,
                            progress=bar.update)
    ds = scores.dataset(reference)
    out = results(ds)
    info = {
        "split": w.split,
        "samples": int(samples.size),
        "windows_in_split": len(w),
        "first_init_time": pd.Timestamp(int(init_ns[0])).isoformat(),
        "last_init_time": pd.Timestamp(int(init_ns[-1])).isoformat(),
        "input": w.spec.input,
        "output": w.spec.output,
        "time_step": w.ds.attrs["time_step"],
        "units": {c: str(u) for c, u in zip(w.channels, w.ds["units"].values)},
        "main_metric": main_metric(scores.tally.metrics),
        "reference": ds.attrs["reference"],
        "regions": list(ds["region"].values),
        "climatology": ds.attrs["climatology"],
        "fitted_coefficients": np.round(next(f for f in room.references if f.name == "fitted").coefficients,
                                        4).tolist(),
        "intervals": ds.attrs["intervals"],
        "conventions": json.loads(ds.attrs["conventions"]),
    }
    if external:
        all_init = ns(w.times[w.starts + w.spec.input - 1])
        info["external"] = {e.name: {"url": e.url, "init_times": int(e.init_ns.size)} for e in external}
        info["samples_without_external"] = int(room.available(forecasters[:-len(external)], all_init).all(1).sum())
    return out, info, ds


def write_metrics(metrics: dict, info: dict, out_dir: str | Path, scores: xr.Dataset) -> dict[str, Path]:
    """One evaluation folder, replaced whole: metrics.json (per forecaster, and the scorecard), evaluation.json
    (what was scored, the conventions), metrics.nc (the scores dataset)."""
    out_dir = Path(out_dir)
    names = {"metrics": "metrics.json", "info": "evaluation.json", "netcdf": "metrics.nc"}

    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / names["metrics"]).write_text(json.dumps(json_safe(metrics), indent=2))
        (tmp / names["info"]).write_text(json.dumps(json_safe(info), indent=2))
        nc = scores.copy()
        nc.attrs.update({k: json.dumps(v) if isinstance(v, (dict, list)) else int(v) if isinstance(v, bool) else v
                         for k, v in info.items() if v is not None and k not in nc.attrs})
        nc.to_netcdf(tmp / names["netcdf"], engine="netcdf4")

    write_atomic(out_dir, build, "evaluation")
    return {k: out_dir / v for k, v in names.items()}


def run(spec: EvaluateSpec, progress: bool = True) -> tuple[dict, dict, dict[str, Path]]:
    """Score a checkpoint on a split of its store next to the reference forecasts; write the evaluation folder."""
    claim(spec.out, "evaluation")
    ensure_writable(spec.out.parent)
    check_reference(spec.reference, ["model", *BASELINES, *(parse_external(t)[0] for t in spec.external)])
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
            metrics, info, scores = evaluate(w, predict, spec.batch_size, progress, external, spec.scoring,
                                             spec.reference)
    finally:
        for ext in external:
            ext.close()
    info.update({"dataset": spec.dataset, "checkpoint": str(spec.checkpoint), "store": str(spec.store),
                 "best_epoch": ckpt.get("state", {}).get("best_epoch"), "trained_output": trained.output,
                 "rollout": steps > trained.output})
    hours = pd.Timedelta(ds.attrs["time_step"]).total_seconds() / 3600
    for name, result in metrics.items():  # each forecaster's series carries its lead times (plots, tables, reports)
        if name != "scorecard":
            result["lead_hours"] = [round((k + 1) * hours, 6) for k in range(steps)]
            result["trained_hours"] = round(trained.output * hours, 6)
    return metrics, info, write_metrics(metrics, info, spec.out, scores)
