"""The main job on the bundled real data: ERA5 UK 2 m temperature end to end (ingest, a short CPU
training with the catalog's defaults, evaluation next to the baselines, a 48 h forecast by rollout, maps
and a report), and the NYBike traffic sample ingested, trained and evaluated the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .evaluate import evaluate_checkpoint
from .forecast import run_forecast
from .ingest import ingest
from .report import write_report
from .store import open_store
from .train import run_training

WEATHER, TRAFFIC = "era5-uk-t2m", "nybike"


@dataclass
class DemoResult:
    name: str
    store: Path
    checkpoint: Path
    metrics: dict
    info: dict
    outputs: dict[str, Path] = field(default_factory=dict)


def _train_and_evaluate(name: str, out: Path, device: str, log) -> DemoResult:
    store = ingest(name, progress=log is None).store
    run_dir = out / name / "run"
    outcome = run_training(name, store=store, device=device, out=run_dir, resume=(run_dir / "last.pt").exists(),
                           progress=log is None, log=log)
    metrics, info, paths = evaluate_checkpoint(name, outcome.best_path, out=out / name / "eval", store=store,
                                               device=device, progress=log is None)
    return DemoResult(name, store, outcome.best_path, metrics, info, {"metrics": paths["metrics"]})


def run_demo(out: str | Path = "outputs/demo", device: str = "auto", traffic: bool = True,
             lead_hours: float = 48, log=None) -> list[DemoResult]:
    out = Path(out)
    weather = _train_and_evaluate(WEATHER, out, device, log)
    fc = run_forecast(WEATHER, weather.checkpoint, out / WEATHER / "forecast", lead_hours=lead_hours,
                      init_times=[_hindcast_init(weather.store, lead_hours)], store=weather.store, device=device)
    report = write_report(fc["zarr"], out / WEATHER / "report", truth_store=weather.store, metrics=weather.metrics)
    weather.outputs.update(forecast=fc["netcdf"], report=report["html"])
    results = [weather]
    if traffic:
        bike = _train_and_evaluate(TRAFFIC, out, device, log)
        fc = run_forecast(TRAFFIC, bike.checkpoint, out / TRAFFIC / "forecast", store=bike.store, device=device,
                          init_times=[_hindcast_init(bike.store, 4)], lead_hours=4)
        report = write_report(fc["zarr"], out / TRAFFIC / "report", truth_store=bike.store, metrics=bike.metrics)
        bike.outputs.update(forecast=fc["netcdf"], report=report["html"])
        results.append(bike)
    return results


def _hindcast_init(store: Path, lead_hours: float) -> str:
    """The latest init time whose whole horizon the store still observes, so the maps show the truth."""
    times = pd.DatetimeIndex(open_store(store)["time"].values)
    return (times[-1] - pd.Timedelta(hours=lead_hours)).isoformat()
