"""The `map-report` flow: cartopy maps and an HTML/Markdown report of any forecast simcast wrote."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.artifacts import publish_report
from flows.tasks import map_report, one_line_errors
from pipelines.settings import Settings
from pipelines.specs import ReportSpec


@flow(name="map-report")
def map_report_flow(forecast: str, out: str | None = None, truth: str | None = None, metrics: str | None = None,
                    projection: str = "PlateCarree", leads: list[str | float] | None = None) -> dict:
    """Maps (observed, forecast, truth, error where the truth covers them), a lead-time metrics plot and
    report.html / report.md for a forecast.

    Args:
        forecast: forecast .zarr or .nc (as written by `simcast forecast` or a forecast flow).
        out: report folder, replaced whole (default: <forecast stem>-report beside the forecast).
        truth: Zarr store with the observed truth, or a catalog entry name for its store.
        metrics: metrics.json from `simcast evaluate` or a training flow, for the table and the lead-time plot.
        projection: cartopy projection name (PlateCarree, Robinson, ...).
        leads: lead times to map, hours or strings like "30min" (default: up to four).
    """
    path = Path(forecast).absolute()
    with one_line_errors():
        if truth and not Path(truth).exists():
            settings = Settings.load()
            if truth in settings.catalog().entries:  # a catalog entry's store
                truth = str(settings.store_path(settings.entry(truth)))
        spec = ReportSpec.from_args(forecast=path, out=out or path.with_name(f"{path.with_suffix('').name}-report"),
                                    truth=truth, metrics=metrics, projection=projection,
                                    leads=[str(x) for x in leads or []])
    report = map_report(spec)
    publish_report(str(path), report)
    return report
