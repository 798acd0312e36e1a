"""The main job on the bundled real data: ERA5 UK 2 m temperature end to end (ingest, a short CPU training with
the catalog's defaults, evaluation at the trained horizon next to the reference forecasts, a 48 h forecast, maps
and a report), and the
NYBike traffic sample the same way. Each step is a stage run on a spec built from the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simvp.checkpoint import load_checkpoint

from . import evaluate, forecast, ingest, train
from .checkpoints import window_spec
from .forecast import latest_init_with_truth
from .predict import horizon_steps
from .report import write_report
from .settings import Settings
from .specs import EvaluateSpec, ForecastSpec, IngestSpec, TrainSpec
from .store import open_store

WEATHER, TRAFFIC = "era5-uk-t2m", "nybike"


@dataclass
class DemoResult:
    name: str
    store: Path
    checkpoint: Path
    metrics: dict
    info: dict
    outputs: dict[str, Path] = field(default_factory=dict)


def _one(name: str, out: Path, device: str, lead_hours: float, settings: Settings, log) -> DemoResult:
    """Scores at the trained (published) horizon; the forecast and its maps reach `lead_hours` (by rollout)."""
    store = ingest.run(IngestSpec.from_catalog(name, settings), progress=log is None).store
    run_dir = out / name / "run"
    outcome = train.run(TrainSpec.from_catalog(name, settings, store=store, device=device, run_dir=run_dir,
                                               resume=(run_dir / "last.pt").exists()), progress=log is None, log=log)
    metrics, info, paths = evaluate.run(EvaluateSpec.from_catalog(
        name, settings, checkpoint=outcome.best_path, store=store, device=device, out=out / name / "eval"),
        progress=log is None)
    fc = forecast.run(ForecastSpec.from_catalog(
        name, settings, checkpoint=outcome.best_path, store=store, device=device, out=out / name / "forecast",
        lead_hours=lead_hours, init_times=[_hindcast_init(store, outcome.best_path, lead_hours)]))
    page = write_report(fc["zarr"], out / name / "report", truth_store=store, metrics=metrics)
    return DemoResult(name, store, outcome.best_path, metrics, info,
                      {"metrics": paths["metrics"], "forecast": fc["netcdf"], "report": page["html"]})


def run_demo(out: str | Path = "outputs/demo", device: str = "auto", traffic: bool = True,
             log=None) -> list[DemoResult]:
    out, settings = Path(out).absolute(), Settings.load()
    results = [_one(WEATHER, out, device, 48, settings, log)]
    if traffic:
        results.append(_one(TRAFFIC, out, device, 4, settings, log))
    return results


def _hindcast_init(store: Path, checkpoint: Path, lead_hours: float) -> str:
    """The latest init time whose whole horizon the store still observes, so the maps show the truth."""
    ds = open_store(store)
    spec = window_spec(load_checkpoint(checkpoint))
    steps = horizon_steps(lead_hours, spec, ds, "lead_hours")
    return latest_init_with_truth(store, spec.input, steps).isoformat()
