"""The forecast flows, run on a schedule: refresh the store (ingest, skipped when current) -> the newest
checkpoint (or a given one) -> a forecast from the latest data -> maps and report.

Outputs go to `<outputs>/forecasts/<dataset>/<init time>/`: forecast.zarr, forecast.nc and report/. A rerun
for the same init time replaces them (each write is atomic).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import flow

from flows.artifacts import publish_forecast
from flows.tasks import (
    ingest_store,
    latest_time,
    map_report,
    newest_checkpoint,
    outputs_root,
    one_line_errors,
    require_kind,
    store_for,
    write_forecast,
)


def forecast_and_report(kind: str, flow_name: str, dataset: str, checkpoint: str | None, init_times: list[str] | None,
                        lead_hours: float | None, device: str, refresh_store: bool, source: str | None,
                        runs_dir: str | None, out_dir: str | None, projection: str, map_leads: list | None) -> dict:
    require_kind(dataset, kind, flow_name)
    if refresh_store:
        store = ingest_store(dataset, source=source)["store"]
    else:
        with one_line_errors():
            store = str(store_for(dataset))
    with one_line_errors():
        ckpt = str(Path(checkpoint).absolute() if checkpoint else newest_checkpoint(dataset, runs_dir))
        init = pd.Timestamp(init_times[-1].split("/")[0] if init_times else latest_time(store)).isoformat()
    out = outputs_root(out_dir) / "forecasts" / dataset / pd.Timestamp(init).strftime("%Y%m%dT%H%M")
    forecast = write_forecast(dataset, ckpt, store, str(out / "forecast"), init_times=init_times,
                              lead_hours=lead_hours, device=device)
    scores = _checkpoint_scores(ckpt)
    report = map_report(forecast["zarr"], str(out / "report"), truth=store, metrics=scores and scores["metrics"],
                        projection=projection, leads=map_leads)
    publish_forecast(dataset, ckpt, init, forecast, report, scores)
    return {"store": store, "checkpoint": ckpt, "forecast": forecast, "report": report["html"], "maps": report["maps"]}


def _checkpoint_scores(checkpoint: str) -> dict | None:
    """The test scores the training flow wrote beside the checkpoint, for the report (None when absent)."""
    folder = Path(checkpoint).parent / "eval-test"
    try:
        return {"metrics": json.loads((folder / "metrics.json").read_text()),
                "info": json.loads((folder / "evaluation.json").read_text())}
    except (OSError, ValueError):
        return None


@flow(name="weatherbench-forecast")
def weatherbench_forecast(dataset: str = "era5-uk-t2m", checkpoint: str | None = None,
                          init_times: list[str] | None = None, lead_hours: float | None = None, device: str = "auto",
                          refresh_store: bool = True, source: str | None = None, runs_dir: str | None = None,
                          out_dir: str | None = None, projection: str = "PlateCarree",
                          map_leads: list[str | float] | None = None) -> dict:
    """Forecast a WeatherBench-kind entry from the latest data in its store with the newest checkpoint; maps.

    Args:
        dataset: catalog entry of kind weatherbench.
        checkpoint: checkpoint to use (default: best.pt of the newest run folder of the data set).
        init_times: init times, or start/end[/every] ranges (a hindcast); default the latest time in the store.
        lead_hours: horizon in hours; beyond the trained one by rollout (default: the trained horizon).
        device: auto | cpu | cuda.
        refresh_store: ingest first (skipped when the store holds the current files).
        source: glob of source files overriding the catalog's (with refresh_store).
        runs_dir: where to look for the newest checkpoint (default $SIMCAST_RUNS_ROOT or ./runs).
        out_dir: root of forecast outputs (default $SIMCAST_OUTPUT_ROOT or ./outputs).
        projection: cartopy projection of the maps.
        map_leads: lead times to map, hours or strings like "6h" (default: up to four).
    """
    return forecast_and_report("weatherbench", "weatherbench-forecast", dataset, checkpoint, init_times, lead_hours,
                               device, refresh_store, source, runs_dir, out_dir, projection, map_leads)


@flow(name="taxibj-forecast")
def taxibj_forecast(dataset: str = "nybike", checkpoint: str | None = None, init_times: list[str] | None = None,
                    lead_hours: float | None = None, device: str = "auto", refresh_store: bool = True,
                    source: str | None = None, runs_dir: str | None = None, out_dir: str | None = None,
                    projection: str = "PlateCarree", map_leads: list[str | float] | None = None) -> dict:
    """Forecast a TaxiBJ-kind entry (city flows) from the latest data in its store with the newest checkpoint.

    Args:
        dataset: catalog entry of kind taxibj.
        checkpoint: checkpoint to use (default: best.pt of the newest run folder of the data set).
        init_times: init times, or start/end[/every] ranges (a hindcast); default the latest time in the store.
        lead_hours: horizon in hours; beyond the trained one by rollout (default: the trained horizon).
        device: auto | cpu | cuda.
        refresh_store: ingest first (skipped when the store holds the current files).
        source: glob of source files overriding the catalog's (with refresh_store).
        runs_dir: where to look for the newest checkpoint (default $SIMCAST_RUNS_ROOT or ./runs).
        out_dir: root of forecast outputs (default $SIMCAST_OUTPUT_ROOT or ./outputs).
        projection: cartopy projection of the maps.
        map_leads: lead times to map, hours or strings like "30min" (default: up to four).
    """
    return forecast_and_report("taxibj", "taxibj-forecast", dataset, checkpoint, init_times, lead_hours, device,
                               refresh_store, source, runs_dir, out_dir, projection, map_leads)
