"""Forecast report: maps, a lead-time metrics plot, a metrics table and provenance as HTML and Markdown.

    paths = pipelines.report.run(ReportSpec.from_args(forecast="fc/era5.zarr", out="fc/report", truth=store))

Everything lands in one folder, built beside it and renamed into place (a rerun replaces the folder whole, and only
a folder simcast wrote as a report is ever replaced):

    <out_dir>/report.html        self-contained, offline: images by relative links
    <out_dir>/report.md          the same content for a Prefect Markdown artifact
    <out_dir>/maps/<variable>_lead<HH>h.png
    <out_dir>/metrics_<metric>.png, metrics.json   when metrics are given

When the data set's archived forecasts have been verified (`simcast verify`), the report links to that page
(relative link; `verification` names another folder).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from ..errors import InputError
from ..forecast.output import forecast_variables, open_forecast
from ..outputs import claim, ensure_writable, write_atomic
from ..specs import ReportSpec
from ..store import open_store, reading
from ..timefmt import format_lead, format_time, lead_label, parse_lead
from .html import _html, _markdown
from .maps import lead_metrics_plot, metric_forecasters, render_forecast_maps
from .scorecard import scorecard_plot
from .tables import IN_UNITS, METRIC_NAMES, forecasters, metrics_table, skill_summary, units_of


# ---- content -------------------------------------------------------------------------------------

def _forecast_units(fc: xr.Dataset) -> str:
    """The forecast's units when all its variables share them (a metric over channels has one unit then)."""
    units = {fc[v].attrs.get("units", "") for v in forecast_variables(fc)}
    return units.pop() if len(units) == 1 else ""


_fmt_time = format_time


def provenance_rows(fc: xr.Dataset, forecast_path: Path, truth_path: str) -> list[tuple[str, str]]:
    a = fc.attrs
    inits = [_fmt_time(t) for t in fc["init_time"].values]
    leads = [format_lead(v) for v in fc["lead_time"].values]
    variables = [f"{v} [{fc[v].attrs.get('units', '')}]" for v in forecast_variables(fc)]
    rows = [
        ("dataset", f"{a.get('dataset', '')} ({a.get('kind', '')}, step {a.get('time_step', '')})"),
        ("forecast", str(forecast_path)),
        ("source store", a.get("source_store", "")),
        ("truth store", truth_path or "none (forecast panels only)"),
        ("checkpoint", a.get("checkpoint", "")),
        ("init time(s)", ", ".join(inits) if len(inits) <= 6 else f"{inits[0]} .. {inits[-1]} ({len(inits)})"),
        ("lead times", f"{leads[0]} .. {leads[-1]} ({len(leads)})" if len(leads) > 1 else leads[0]),
        ("variables", ", ".join(variables)),
        ("forecast created", a.get("created", "")),
        ("simcast version", f"{a.get('simcast_version', '')} (forecast), {__version__} (report)"),
    ]
    standard = {"Conventions", "title", "simcast_forecast_format", "dataset", "kind", "properties", "source_store",
                "checkpoint",
                "simcast_version", "created", "history", "time_step", "channels", "extent", "time_coverage_start",
                "time_coverage_end", "geospatial_lat_min", "geospatial_lat_max", "geospatial_lon_min",
                "geospatial_lon_max"}
    rows += [(k, str(v)) for k, v in a.items() if k not in standard]
    return [(k, v) for k, v in rows if v != ""]


# ---- writers -------------------------------------------------------------------------------------

def read_metrics(path: str | Path) -> dict:
    """A metrics.json written by `simcast evaluate`; one line when it is missing or not one."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "metrics file not found (expected metrics.json from simcast evaluate)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"metrics file not readable: {getattr(e, 'strerror', None) or e}") from None
    except ValueError as e:
        raise InputError(path, f"not a JSON metrics file ({e})") from None
    if not isinstance(metrics, dict) or not forecasters(metrics):
        raise InputError(path, "not a simcast metrics file (expected scores per forecaster, as simcast evaluate "
                               "writes them)")
    return metrics


def run(spec: ReportSpec) -> dict:
    """Maps, the metrics plot and table, report.html and report.md for the forecast the spec names."""
    claim(spec.out, "report")
    ensure_writable(spec.out.parent)
    metrics = read_metrics(spec.metrics) if spec.metrics else None
    leads = [parse_lead(x, "leads") for x in spec.leads] or None
    if spec.verification is not None:
        verification_link(spec.verification, spec.out)  # refuse a folder that is not one before any work
    return write_report(spec.forecast, spec.out, truth_store=spec.truth, metrics=metrics,
                        projection=spec.projection, leads=leads, verification=spec.verification or "auto")


def verification_link(folder: str | Path, out_dir: str | Path) -> tuple[str, str]:
    """(link from the report folder to the verification page, one sentence about it) for a folder written by
    `simcast verify`; one line when it is not one."""
    from .verification import FILES, read_verification, summary_line

    folder = Path(folder).absolute()
    result = read_verification(folder)
    try:
        text = summary_line(result)
    except (KeyError, TypeError, AttributeError):
        raise InputError(folder / FILES["json"], "not a verification written by simcast verify") from None
    return os.path.relpath(folder / FILES["html"], Path(out_dir).absolute()), text


def _default_verification(fc: xr.Dataset, out_dir: Path) -> tuple[str, str] | None:
    """The data set's verification page (<output root>/verification/<dataset>/) when there is a readable one."""
    from ..settings import Settings

    dataset = str(fc.attrs.get("dataset", ""))
    if not dataset:
        return None
    folder = Settings.load().verification_dir(dataset)
    if not (folder / "verification.html").is_file():
        return None
    try:
        return verification_link(folder, out_dir)
    except InputError:
        return None


def write_report(forecast_path, out_dir, truth_store=None, metrics: dict | None = None, projection="PlateCarree",
                 leads=None, init_index: int = -1, variables=None, verification=None) -> dict:
    """Render maps (and the metrics plot when metrics are given) and write report.html and report.md.

    forecast_path: a forecast written by write_forecast (or an opened forecast Dataset). truth_store: a store
    path or opened store giving the observed frame at init time and the truth at valid times (None: forecast
    panels only). metrics: {"model": {"rmse": .., "by_lead": {"rmse": [..]}}, "persistence": {..}, ...}.
    leads: lead times to map (Timedeltas). verification: a folder written by `simcast verify` to link, "auto" for
    the data set's when there is one, None for no link. Returns {"html", "markdown", "maps", "metrics_plot",
    "dir"}.
    """
    out_dir = Path(out_dir)
    claim(out_dir, "report")
    if isinstance(forecast_path, xr.Dataset):
        fc, fc_label = forecast_path, forecast_path.encoding.get("source", "(in memory)")
        return _write_report(fc, fc_label, out_dir, truth_store, metrics, projection, leads, init_index, variables,
                             verification)
    with open_forecast(forecast_path) as fc:
        return _write_report(fc, str(forecast_path), out_dir, truth_store, metrics, projection, leads, init_index,
                             variables, verification)


def _write_report(fc, fc_label, out_dir, truth_store, metrics, projection, leads, init_index, variables,
                  verification=None) -> dict:
    if truth_store is None or isinstance(truth_store, xr.Dataset):
        truth = truth_store
        truth_label = "" if truth is None else str(truth.encoding.get("source", "(in memory)"))
    else:
        truth, truth_label = open_store(truth_store), str(truth_store)
    zone = json.loads(fc.attrs.get("properties", "{}")).get("time_zone", "")

    title = f"simcast forecast report: {fc.attrs.get('dataset', '')}"
    init = fc["init_time"].values[init_index]
    notes = [f"Maps for init time {_fmt_time(init, zone)}"
             + (" (one of several; see provenance)" if fc.sizes["init_time"] > 1 else "")
             + f"; report written {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}."]
    step = pd.Timedelta(fc.attrs.get("time_step") or pd.Timedelta(fc["lead_time"].values[0]))
    if isinstance(verification, str) and verification == "auto":
        verification = _default_verification(fc, out_dir)
    elif verification is not None:
        verification = verification_link(verification, out_dir)
    result: dict = {}

    def build(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        guard = reading(truth.encoding["source"]) if truth is not None and "source" in truth.encoding else nullcontext()
        with guard:
            pngs = render_forecast_maps(fc, tmp / "maps", truth=truth, leads=leads, variables=variables,
                                        projection=projection, init_index=init_index)
        lead_of = {f"_lead{lead_label(v)}": v for v in fc["lead_time"].values}
        maps = []
        for p in pngs:
            var, _, label = p.stem.rpartition("_lead")
            lead = lead_of[f"_lead{label}"]
            valid = pd.Timestamp(init) + pd.Timedelta(lead)
            maps.append((f"{var}: lead {format_lead(lead)}, init {_fmt_time(init, zone)}, valid "
                         f"{_fmt_time(valid, zone)}", f"maps/{p.name}"))
        metrics_png, table, skill, figures = None, None, [], []
        if metrics:
            units = units_of(metrics) or _forecast_units(fc)
            table = metrics_table(metrics, units)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
            for metric in ("rmse_weighted", "rmse", "mae"):
                names = metric_forecasters(metrics, metric)
                if names:
                    first = metrics[names[0]]
                    n = len(first["by_lead"][metric])
                    hours = first.get("lead_hours") or list(np.arange(1, n + 1) * step.total_seconds() / 3600)
                    lead_metrics_plot(metrics, tmp / f"metrics_{metric}.png", metric=metric, lead_hours=hours,
                                      units=units if metric in IN_UNITS else "",
                                      title=f"{METRIC_NAMES[metric]} by lead time: {fc.attrs.get('dataset', '')}")
                    metrics_png = f"metrics_{metric}.png"
                    skill = skill_summary(metrics, metric, hours)
                    if scorecard_plot(metrics, tmp / "scorecard.png", hours, metric):
                        figures.append(("scorecard.png", "Scorecard: skill against the reference forecast by lead "
                                                         "time (dot: significant at 95%, block bootstrap over init "
                                                         "times)."))
                    break
        prov = provenance_rows(fc, Path(fc_label), truth_label)
        (tmp / "report.html").write_text(_html(title, prov, table, metrics_png, maps, notes, skill, verification, figures),
                                         encoding="utf-8")
        (tmp / "report.md").write_text(_markdown(title, prov, table, metrics_png, maps, notes, skill, verification,
                                                   figures),
                                       encoding="utf-8")
        result.update(maps=[out_dir / rel for _, rel in maps],
                      metrics_plot=(out_dir / metrics_png) if metrics_png else None)

    write_atomic(out_dir, build, "report")
    return {"html": out_dir / "report.html", "markdown": out_dir / "report.md", **result, "dir": out_dir}


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
