"""The forecast flow, run on a schedule: refresh the store (ingest, skipped when current) -> the newest checkpoint
(or a given one) -> a forecast from the latest data, added to the data set's forecast archive -> verification of
the archived forecasts whose truth has arrived -> maps and report (linking the verification page).

One flow function, deployed as `weatherbench-forecast` (every 6 hours) and `taxibj-forecast` (every 30 minutes).
Outputs go to `<outputs>/forecasts/<dataset>/<init time>/`: forecast.zarr, forecast.nc and report/; the archive is
`<outputs>/archive/<dataset>.zarr` and the verification `<outputs>/verification/<dataset>/`. A rerun for the same
init time replaces them (each write is atomic; in the archive only that init time is replaced).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow

from flows.artifacts import publish_forecast, publish_verification
from flows.defaults import default_dataset
from flows.tasks import ingest_store, map_report, one_line_errors, verify_archive, write_forecast
from pipelines.forecast import latest_time
from pipelines.settings import Settings
from pipelines.specs import ForecastSpec, IngestSpec, ReportSpec, VerifySpec, parse_init_time
from pipelines.timefmt import parse_lead


def forecast_flow(dataset: str | None = None, checkpoint: str | None = None, init_times: list[str] | None = None,
                  lead_hours: float | None = None, device: str = "auto", refresh_store: bool = True,
                  source: str | None = None, runs_dir: str | None = None, out_dir: str | None = None,
                  projection: str = "PlateCarree", map_leads: list[str | float] | None = None,
                  archive: bool = True, archive_path: str | None = None, verify: bool = True) -> dict:
    """Forecast a catalog entry from the latest data in its store with the newest checkpoint; archive it, verify
    the archive, maps and report.

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
        archive: add the forecast to the data set's forecast archive (replacing the same init times).
        archive_path: the archive (default: <out_dir>/archive/<dataset>.zarr).
        verify: after archiving, score the archived forecasts whose valid times are in the store next to the
            baselines (<out_dir>/verification/<dataset>/); nothing to verify yet is not a failure.
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
                                         init_times=init_times, lead_hours=lead_hours, device=device,
                                         archive=archive, archive_path=archive_path if archive else None)
    forecast = write_forecast(spec)
    verification = None
    if archive and verify:
        with one_line_errors():
            verify_spec = VerifySpec.from_catalog(dataset, settings, archive_path=spec.archive_path, store=store)
        verification = verify_archive(verify_spec)
    scores = ckpt.parent / "eval-test" / "metrics.json"
    with one_line_errors():
        # the page of this run's verification, or an earlier one when nothing was verified this time
        page = verify_spec.out / "verification.html" if verification is not None else None
        verified = verify_spec.out if page is not None and page.is_file() else None
        report_spec = ReportSpec.from_args(forecast=forecast["zarr"], out=out / "report", truth=store,
                                           metrics=scores if scores.is_file() else None, projection=projection,
                                           leads=[str(x) for x in map_leads or []], verification=verified)
    report = map_report(report_spec)
    publish_forecast(dataset, str(ckpt), pd.Timestamp(init).isoformat(), forecast, report, scores)
    if verification is not None:
        publish_verification(dataset, verification)
    return {"store": store, "checkpoint": str(ckpt), "forecast": forecast, "report": report["html"],
            "maps": report["maps"], "archive": forecast.get("archive"), "verification": verification}


weatherbench_forecast = flow(name="weatherbench-forecast")(forecast_flow)
taxibj_forecast = flow(name="taxibj-forecast")(forecast_flow)
