"""Forecast report: maps, a lead-time metrics plot, a metrics table and provenance as HTML and Markdown.

Everything lands in one folder, built beside it and renamed into place (a rerun replaces the folder whole):

    <out_dir>/report.html        self-contained, offline: images by relative links
    <out_dir>/report.md          the same content for a Prefect Markdown artifact
    <out_dir>/maps/<variable>_lead<HH>h.png
    <out_dir>/metrics_<metric>.png, metrics.json   when metrics are given
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from .errors import SimcastError
from .forecast_io import forecast_variables, lead_label, open_forecast
from .maps import format_lead, lead_metrics_plot, metric_forecasters, render_forecast_maps
from .store import open_store, write_atomic

MARKER = ".simcast-report"
TABLE_METRICS = ("rmse", "rmse_weighted", "mae", "mae_weighted", "bias", "acc", "mse_paper", "mae_paper", "ssim",
                 "psnr")
METRIC_NAMES = {"rmse": "RMSE", "rmse_weighted": "RMSE (lat-weighted)", "mae": "MAE",
                "mae_weighted": "MAE (lat-weighted)", "bias": "bias", "acc": "ACC", "mse_paper": "MSE (paper)",
                "mae_paper": "MAE (paper)", "ssim": "SSIM", "psnr": "PSNR"}
IN_UNITS = {"rmse", "rmse_weighted", "mae", "mae_weighted", "bias"}  # the others are unitless or on [0, 1] data
FORECASTER_ORDER = ("model", "persistence", "previous_day", "climatology")
_HIGHER_IS_BETTER = {"acc", "ssim", "psnr"}


class ReportError(SimcastError):
    """The report cannot be written where asked."""


# ---- content -------------------------------------------------------------------------------------

def _number(v) -> float | None:
    """A metric value as a float: JSON null -> None, "inf" (how metrics.json writes infinity) -> inf."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _forecasters(metrics: dict) -> list[str]:
    names = [k for k, v in metrics.items() if isinstance(v, dict) and (
        any(_number(v.get(m)) is not None for m in TABLE_METRICS) or isinstance(v.get("by_lead"), dict))]
    return sorted(names, key=lambda n: (FORECASTER_ORDER.index(n) if n in FORECASTER_ORDER else 99, n))


def metrics_table(metrics: dict, units: str = "") -> tuple[list[str], list[list[str]]]:
    """Header and rows (model next to baselines) of the overall metrics present; the best value(s) in each
    column are marked with a trailing '*'. units: of the data (from metrics["units"] when not given)."""
    names = _forecasters(metrics)
    cols = [m for m in TABLE_METRICS if any(_number(metrics[n].get(m)) is not None for n in names)]
    units = units or _units(metrics, names)
    header = ["forecaster"] + [METRIC_NAMES[m] + (f" [{units}]" if units and m in IN_UNITS else "") for m in cols]
    best = {}
    for m in cols:
        vals = {n: _number(metrics[n].get(m)) for n in names}
        vals = {n: v for n, v in vals.items() if v is not None and not np.isnan(v)}
        score = {n: (v if m in _HIGHER_IS_BETTER else -abs(v)) for n, v in vals.items()}
        top = {n for n, v in score.items() if v == max(score.values(), default=None)}
        if len(vals) > 1 and len(top) < len(vals):  # all equal: nothing to point out
            best[m] = top
    rows = []
    for n in names:
        row = [n.replace("_", " ")]
        for m in cols:
            v = _number(metrics[n].get(m))
            row.append("" if v is None else f"{v:.4g}" + ("*" if n in best.get(m, ()) else ""))
        rows.append(row)
    return header, rows


def _units(metrics: dict, names: list[str]) -> str:
    for u in [metrics.get("units")] + [metrics[n].get("units") for n in names]:
        if isinstance(u, str) and u:
            return u
        if isinstance(u, dict) and len(set(u.values())) == 1:
            return str(next(iter(u.values())))
    return ""


def _forecast_units(fc: xr.Dataset) -> str:
    """The forecast's units when all its variables share them (a metric over channels has one unit then)."""
    units = {fc[v].attrs.get("units", "") for v in forecast_variables(fc)}
    return units.pop() if len(units) == 1 else ""


def _fmt_time(t) -> str:
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")


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
    standard = {"Conventions", "title", "simcast_forecast_format", "dataset", "kind", "source_store", "checkpoint",
                "simcast_version", "created", "history", "time_step", "channels", "extent", "time_coverage_start",
                "time_coverage_end", "geospatial_lat_min", "geospatial_lat_max", "geospatial_lon_min",
                "geospatial_lon_max"}
    rows += [(k, str(v)) for k, v in a.items() if k not in standard]
    return [(k, v) for k, v in rows if v != ""]


# ---- writers -------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1400px;
padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums} .best{font-weight:bold}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #ddd} figcaption{color:#555;font-size:.9em}
.note{color:#666;font-size:.9em}
"""


def _html(title: str, prov, table, metrics_png: str | None, maps: list[tuple[str, str]], notes: list[str]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    out += [f'<p class="note">{e(n)}</p>' for n in notes]
    out.append("<h2>Provenance</h2><table>")
    out += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in prov]
    out.append("</table>")
    if table is not None:
        header, rows = table
        out.append("<h2>Metrics</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = [f"<td>{e(row[0])}</td>"]
            for c in row[1:]:
                best = c.endswith("*")
                cells.append(f'<td class="num{" best" if best else ""}">{e(c.rstrip("*"))}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append('</table><p class="note">Bold: best in its column. Metrics in physical units over the '
                   "evaluation period.</p>")
    if metrics_png:
        out.append(f'<figure><a href="{e(metrics_png)}"><img src="{e(metrics_png)}" alt="metrics by lead time">'
                   "</a><figcaption>Metric by lead time, model and baselines.</figcaption></figure>")
    out.append("<h2>Maps</h2>")
    if not maps:
        out.append('<p class="note">No maps.</p>')
    for caption, rel in maps:
        out.append(f'<figure><a href="{e(rel)}"><img src="{e(rel)}" alt="{e(caption)}" loading="lazy"></a>'
                   f"<figcaption>{e(caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _markdown(title: str, prov, table, metrics_png: str | None, maps: list[tuple[str, str]], notes) -> str:
    out = [f"# {title}", ""]
    out += [f"_{n}_" for n in notes] + ([""] if notes else [])
    out += ["## Provenance", "", "| | |", "| --- | --- |"]
    out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in prov]
    if table is not None:
        header, rows = table
        out += ["", "## Metrics", "", "| " + " | ".join(map(_md_cell, header)) + " |",
                "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
        for row in rows:
            cells = [_md_cell(row[0])] + [f"**{c[:-1]}**" if c.endswith("*") else c for c in row[1:]]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Bold: best in its column."]
    if metrics_png:
        out += ["", f"![metrics by lead time]({metrics_png})"]
    out += ["", "## Maps", ""]
    out += [f"- [{caption}]({rel})" for caption, rel in maps] or ["No maps."]
    return "\n".join(out) + "\n"


def _check_target(out_dir: Path) -> None:
    if out_dir.resolve() in (Path.cwd().resolve(), Path.home().resolve(), Path("/")):
        raise ReportError(f"{out_dir}: a report folder is replaced as a whole; name a folder of its own")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MARKER).exists())):
        raise ReportError(f"{out_dir}: exists and is not a simcast report folder; a report replaces its folder "
                          "whole, so name a new or empty folder")


def write_report(forecast_path, out_dir, truth_store=None, metrics: dict | None = None, projection="PlateCarree",
                 leads=None, init_index: int = -1, variables=None) -> dict:
    """Render maps (and the metrics plot when metrics are given) and write report.html and report.md.

    forecast_path: a forecast written by write_forecast (or an opened forecast Dataset). truth_store: a store
    path or opened store giving the observed frame at init time and the truth at valid times (None: forecast
    panels only). metrics: {"model": {"rmse": .., "by_lead": {"rmse": [..]}}, "persistence": {..}, ...}.
    Returns {"html": path, "markdown": path, "maps": [paths], "metrics_plot": path or None, "dir": out_dir}.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir)
    if isinstance(forecast_path, xr.Dataset):
        fc, fc_label = forecast_path, forecast_path.encoding.get("source", "(in memory)")
        return _write_report(fc, fc_label, out_dir, truth_store, metrics, projection, leads, init_index, variables)
    with open_forecast(forecast_path) as fc:
        return _write_report(fc, str(forecast_path), out_dir, truth_store, metrics, projection, leads, init_index,
                             variables)


def _write_report(fc, fc_label, out_dir, truth_store, metrics, projection, leads, init_index, variables) -> dict:
    if truth_store is None or isinstance(truth_store, xr.Dataset):
        truth = truth_store
        truth_label = "" if truth is None else str(truth.encoding.get("source", "(in memory)"))
    else:
        truth, truth_label = open_store(truth_store), str(truth_store)

    title = f"simcast forecast report: {fc.attrs.get('dataset', '')}"
    init = fc["init_time"].values[init_index]
    notes = [f"Maps for init time {_fmt_time(init)}"
             + (" (one of several; see provenance)" if fc.sizes["init_time"] > 1 else "")
             + f"; report written {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}."]
    lead_hours = pd.TimedeltaIndex(fc["lead_time"].values).total_seconds().to_numpy() / 3600
    result: dict = {}

    def build(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        (tmp / MARKER).write_text("simcast report folder: replaced whole by the next report\n")
        pngs = render_forecast_maps(fc, tmp / "maps", truth=truth, leads=leads, variables=variables,
                                    projection=projection, init_index=init_index)
        lead_of = {f"_lead{lead_label(v)}": v for v in fc["lead_time"].values}
        maps = []
        for p in pngs:
            var, _, label = p.stem.rpartition("_lead")
            lead = lead_of[f"_lead{label}"]
            valid = pd.Timestamp(init) + pd.Timedelta(lead)
            maps.append((f"{var}: lead {format_lead(lead)}, init {_fmt_time(init)}, valid {_fmt_time(valid)}",
                         f"maps/{p.name}"))
        metrics_png, table = None, None
        if metrics:
            units = _units(metrics, _forecasters(metrics)) or _forecast_units(fc)
            table = metrics_table(metrics, units)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
            for metric in ("rmse", "rmse_weighted", "mae"):
                names = metric_forecasters(metrics, metric)
                if names:
                    n = len(metrics[names[0]]["by_lead"][metric])
                    hours = lead_hours if n == len(lead_hours) else None
                    lead_metrics_plot(metrics, tmp / f"metrics_{metric}.png", metric=metric, lead_hours=hours,
                                      units=units if metric in IN_UNITS else "",
                                      title=f"{METRIC_NAMES[metric]} by lead time: {fc.attrs.get('dataset', '')}")
                    metrics_png = f"metrics_{metric}.png"
                    break
        prov = provenance_rows(fc, Path(fc_label), truth_label)
        (tmp / "report.html").write_text(_html(title, prov, table, metrics_png, maps, notes), encoding="utf-8")
        (tmp / "report.md").write_text(_markdown(title, prov, table, metrics_png, maps, notes), encoding="utf-8")
        result.update(maps=[out_dir / rel for _, rel in maps],
                      metrics_plot=(out_dir / metrics_png) if metrics_png else None)

    write_atomic(out_dir, build)
    return {"html": out_dir / "report.html", "markdown": out_dir / "report.md", **result, "dir": out_dir}


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
