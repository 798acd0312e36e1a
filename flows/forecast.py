"""The forecast flow, run on a schedule: refresh the store (ingest, skipped when current) -> the newest checkpoint
(or a given one) -> a forecast from the latest data -> maps and report.

One flow function, deployed as `weatherbench-forecast` (every 6 hours) and `taxibj-forecast` (every 30 minutes).
Outputs go to `<outputs>/forecasts/<dataset>/<init time>/`: forecast.zarr, forecast.nc and report/. A rerun for the
same init time replaces them (each write is atomic).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow

from flows.artifacts import publish_forecast
from flows.defaults import default_dataset
from flows.tasks import ingest_store, map_report, one_line_errors, write_forecast
from pipelines.forecast import latest_time
from pipelines.settings import Settings
from pipelines.specs import ForecastSpec, IngestSpec, ReportSpec, parse_init_time
from pipelines.timefmt import parse_lead


def forecast_flow(dataset: str | None = None, checkpoint: str | None = None, init_times: list[str] | None = None,
                  lead_hours: float | None = None, device: str = "auto", refresh_store: bool = True,
                  source: str | None = None, runs_dir: str | None = None, out_dir: str | None = None,
                  projection: str = "PlateCarree", map_leads: list[str | float] | None = None) -> dict:
    """Forecast a catalog entry from the latest data in its store with the newest checkpoint; maps and report.

    Args:
        dataset: catalog entry (default: the bundled ERA5 UK sample for weatherbench-forecast, the bundled NYBike
            sample for taxibj-forecast).
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
    dataset = dataset or default_dataset()
    with one_line_errors():
        for lead in map_leads or []:  # checked before any work: the report comes last
            parse_lead(str(lead), "map_leads")
        settings = Settings.load(runs_root=runs_dir, output_root=out_dir)
        ingest_spec = IngestSpec.from_catalog(dataset, settings, source=source)
    store = ingest_store(ingest_spec)["store"] if refresh_store else str(ingest_spec.store)
    with one_line_errors():
        ckpt = Path(checkpoint).absolute() if checkpoint else settings.newest_checkpoint(dataset)
        init = parse_init_time(init_times[-1])[0] if init_times else latest_time(store)
        out = settings.output_root / "forecasts" / dataset / pd.Timestamp(init).strftime("%Y%m%dT%H%M")
        spec = ForecastSpec.from_catalog(dataset, settings, checkpoint=ckpt, store=store, out=out / "forecast",
                                         init_times=init_times, lead_hours=lead_hours, device=device)
    forecast = write_forecast(spec)
    scores = ckpt.parent / "eval-test" / "metrics.json"
    with one_line_errors():
        report_spec = ReportSpec.from_args(forecast=forecast["zarr"], out=out / "report", truth=store,
                                           metrics=scores if scores.is_file() else None, projection=projection,
                                           leads=[str(x) for x in map_leads or []])
    report = map_report(report_spec)
    publish_forecast(dataset, str(ckpt), pd.Timestamp(init).isoformat(), forecast, report, scores)
    return {"store": store, "checkpoint": str(ckpt), "forecast": forecast, "report": report["html"],
            "maps": report["maps"]}


weatherbench_forecast = flow(name="weatherbench-forecast")(forecast_flow)
taxibj_forecast = flow(name="taxibj-forecast")(forecast_flow)
