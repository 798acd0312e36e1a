"""Cartopy maps of forecasts (observed, forecast, truth, error per lead time) and a lead-time metrics plot.

Works offline: Natural Earth coastlines come from the copy bundled in `pipelines/natural_earth/` (cartopy's
folder layout), found through `cartopy.config["pre_existing_data_dir"]`, which this module points there
unless the user set `CARTOPY_DATA_DIR` or a directory of their own. Coastlines are read from disk here,
never downloaded: a missing data set draws gridlines only, with a warning.

Figures are built on matplotlib's Agg canvas without pyplot (no display, no global figure state) and
each PNG is written to a temporary name beside its target, then renamed into place.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import warnings
from pathlib import Path

import cartopy
import cartopy.crs as ccrs
import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import xarray as xr
from cartopy.feature import ShapelyFeature
from cartopy.io import shapereader
from cartopy.mpl.ticker import LatitudeFormatter, LatitudeLocator, LongitudeFormatter, LongitudeLocator
from matplotlib.figure import Figure

from ..errors import UsageError
from ..forecast.output import cell_bounds, forecast_variables
from ..timefmt import format_lead, format_time, lead_label, parse_lead
from .figures import save_png as _save
from .style import label, style
from .tables import METRIC_NAMES, forecasters as table_forecasters

log = logging.getLogger(__name__)

NATURAL_EARTH_DIR = Path(__file__).resolve().parents[1] / "natural_earth"
PANEL_INCHES = 4.0  # width of one map panel
DPI = 110
MAX_DEFAULT_LEADS = 4
# figure layout, inches: margins around the row of panels
_LEFT, _RIGHT, _GAP = 0.6, 0.3, 0.25
_TOP, _TITLE = 0.55, 0.45  # figure title (two lines), panel titles (two lines)
_TICKS, _CBAR, _NOTE = 0.3, 0.6, 0.2  # longitude labels, colorbar with its label, footnote


def _configure_cartopy() -> None:
    """Point cartopy at the bundled Natural Earth data unless the user chose a directory."""
    user_dir = str(cartopy.config.get("pre_existing_data_dir") or "")
    if not os.environ.get("CARTOPY_DATA_DIR") and user_dir in ("", "."):
        cartopy.config["pre_existing_data_dir"] = NATURAL_EARTH_DIR


_configure_cartopy()


class ProjectionError(UsageError):
    """An unknown projection name, or one that cannot be built without arguments."""


# ---- projections ---------------------------------------------------------------------------------

def _projection_classes() -> dict[str, type]:
    return {n: c for n, c in vars(ccrs).items()
            if isinstance(c, type) and issubclass(c, ccrs.Projection) and c is not ccrs.Projection
            and not n.startswith("_")}


def get_projection(name: str | ccrs.Projection = "PlateCarree", centre: tuple[float, float] | None = None,
                   regional: bool = False) -> ccrs.Projection:
    """A cartopy projection by class name (case-insensitive), centred on a regional grid where it takes a centre."""
    if isinstance(name, ccrs.Projection):
        return name
    classes = _projection_classes()
    key = str(name).replace("_", "").replace("-", "").replace(" ", "").lower()
    found = {n.lower(): c for n, c in classes.items()}.get(key)
    if found is None:
        raise ProjectionError("projection", f"unknown projection {name!r}; use a cartopy.crs name such as PlateCarree, Robinson, "
                              "LambertConformal, Mollweide, Orthographic, Mercator, EqualEarth")
    params = inspect.signature(found).parameters
    kwargs = {}
    if centre is not None and regional and found is not ccrs.PlateCarree:
        lon0, lat0 = centre
        if "central_longitude" in params:
            kwargs["central_longitude"] = float(lon0)
        if "central_latitude" in params:
            kwargs["central_latitude"] = float(lat0)
        if "standard_parallels" in params and found in (ccrs.LambertConformal, ccrs.AlbersEqualArea,
                                                        ccrs.EquidistantConic):
            kwargs["standard_parallels"] = (float(lat0) - 5, float(lat0) + 5)
    try:
        return found(**kwargs)
    except Exception as e:
        raise ProjectionError("projection", f"projection {found.__name__} cannot be built with defaults ({e}); pass a "
                              f"cartopy.crs instance instead") from None


# ---- coastlines ----------------------------------------------------------------------------------

def _coastline_file(resolution: str) -> Path | None:
    rel = Path("shapefiles", "natural_earth", "physical", f"ne_{resolution}_coastline.shp")
    roots = [cartopy.config.get("pre_existing_data_dir"), cartopy.config.get("data_dir"), NATURAL_EARTH_DIR]
    for root in roots:
        if root and str(root) not in ("", ".") and (Path(root) / rel).is_file():
            return Path(root) / rel
    return None


@functools.lru_cache(maxsize=16)
def _coastline_geometries(path: str, bbox: tuple | None) -> tuple:
    return tuple(shapereader.Reader(path, bbox=bbox).geometries())


def coastline_feature(resolution: str, faint: bool = False, bbox: tuple | None = None) -> ShapelyFeature | None:
    """Natural Earth coastlines from disk (never downloaded); None with a warning when not found.
    bbox (lon0, lat0, lon1, lat1): read only the lines crossing it (a regional map need not parse the world)."""
    for res in dict.fromkeys((resolution, "50m", "110m")):
        path = _coastline_file(res)
        if path is not None:
            try:
                geoms = _coastline_geometries(str(path), bbox)
            except Exception as e:  # a damaged file is no reason to lose the map
                warnings.warn(f"Natural Earth coastline {path} is unreadable ({e}); drawing gridlines only",
                              stacklevel=3)
                return None
            if res != resolution:
                log.info("coastline %s not found; using %s", resolution, res)
            style = (dict(edgecolor="0.3", linewidth=0.8, alpha=0.7) if faint
                     else dict(edgecolor="black", linewidth=0.6))
            return ShapelyFeature(geoms, ccrs.PlateCarree(), facecolor="none", **style)
    warnings.warn(f"Natural Earth {resolution} coastline not found (looked in cartopy's pre_existing_data_dir "
                  f"{cartopy.config.get('pre_existing_data_dir')}, data_dir {cartopy.config.get('data_dir')} and "
                  f"{NATURAL_EARTH_DIR}); drawing gridlines only", stacklevel=3)
    return None


# ---- grids and values ----------------------------------------------------------------------------

def _edges(centres: np.ndarray, clip=None) -> np.ndarray:
    b = cell_bounds(centres, clip)
    return np.concatenate([b[:, 0], b[-1:, 1]])


class _Grid:
    """Where a forecast's cells lie: lat/lon edges when it has them, else row/column indices."""

    def __init__(self, ds: xr.Dataset, var: str):
        self.dims = ds[var].dims[2:]
        self.georef = "lat" in ds.coords and "lon" in ds.coords
        if self.georef:
            lat, lon = ds["lat"].values.astype(float), ds["lon"].values.astype(float)
            self.lat_edges = _edges(lat, (-90.0, 90.0))
            self.lon_edges = _edges(lon)
            self.lon_range = (float(self.lon_edges.min()), float(self.lon_edges.max()))
            self.lat_range = (float(self.lat_edges.min()), float(self.lat_edges.max()))
            self.is_global = (self.lon_range[1] - self.lon_range[0] >= 350
                              and self.lat_range[1] - self.lat_range[0] >= 150)
            self.centre = (float(np.mean(self.lon_range)), float(np.mean(self.lat_range)))
            # a city-sized box: Natural Earth's 1:50m coastline is only a rough outline at this scale
            self.small = max(self.lon_range[1] - self.lon_range[0], self.lat_range[1] - self.lat_range[0]) < 2.0
        self.shape = ds[var].shape[2:]

    def read_bbox(self) -> tuple | None:
        """A lon/lat box around a regional grid, padded for projections that show more than the grid."""
        if self.is_global or self.lon_range[1] > 180:
            return None
        pad_lon = max(2.0, self.lon_range[1] - self.lon_range[0])
        pad_lat = max(2.0, self.lat_range[1] - self.lat_range[0])
        return (round(self.lon_range[0] - pad_lon, 3), round(max(-90.0, self.lat_range[0] - pad_lat), 3),
                round(self.lon_range[1] + pad_lon, 3), round(min(90.0, self.lat_range[1] + pad_lat), 3))

    def aspect(self, proj) -> float:
        """Height / width of the mapped area in the projection (bounded to keep figures sensible)."""
        if not self.georef:
            return float(np.clip(self.shape[0] / self.shape[1], 0.4, 2.0))
        if self.is_global:
            x0, x1, y0, y1 = proj.x_limits + proj.y_limits
        else:
            lon = np.linspace(*self.lon_range, 20)
            lat = np.linspace(*self.lat_range, 20)
            glon, glat = np.meshgrid(lon, lat)
            pts = proj.transform_points(ccrs.PlateCarree(), glon.ravel(), glat.ravel())
            x0, x1 = np.nanmin(pts[:, 0]), np.nanmax(pts[:, 0])
            y0, y1 = np.nanmin(pts[:, 1]), np.nanmax(pts[:, 1])
        return float(np.clip((y1 - y0) / max(x1 - x0, 1e-12), 0.4, 2.0))


_CMAPS = {
    "air_temperature": "RdYlBu_r", "geopotential": "viridis", "specific_humidity": "YlGnBu",
    "relative_humidity": "YlGnBu", "precipitation_amount": "Blues", "cloud_area_fraction": "Greys_r",
    "toa_incoming_shortwave_flux": "magma",
}
_DIVERGING = {"eastward_wind", "northward_wind"}


def _cmap_for(attrs: dict, name: str) -> tuple[str, bool]:
    std = attrs.get("standard_name", "")
    if std in _DIVERGING:
        return "PuOr_r", True
    if name in ("inflow", "outflow") or "flow" in attrs.get("units", ""):
        return "YlOrRd", False
    return _CMAPS.get(std, "viridis"), False


def _units_label(attrs: dict) -> str:
    u = attrs.get("units", "")
    return f" [{u}]" if u else ""


def _truth_frame(truth: xr.Dataset | None, var: str, when, shape) -> np.ndarray | None:
    """The store's frame of `var` at time `when`, or None when the store does not cover it."""
    if truth is None or "data" not in truth or "channel" not in truth.coords:
        return None
    if var not in [str(c) for c in truth["channel"].values]:
        return None
    i = truth.indexes["time"].get_indexer([pd.Timestamp(when)])[0]
    if i < 0:
        return None
    frame = truth["data"].isel(time=int(i)).sel(channel=var).values
    if frame.shape != tuple(shape):
        warnings.warn(f"truth grid {frame.shape} differs from the forecast grid {tuple(shape)}; truth not shown",
                      stacklevel=4)
        return None
    return np.asarray(frame, dtype="float64")


# ---- leads ---------------------------------------------------------------------------------------

def select_leads(forecast: xr.Dataset, leads=None) -> list[int]:
    """Indices of the chosen lead times. None: up to four spread from the first to the last lead."""
    available = pd.TimedeltaIndex(forecast["lead_time"].values)
    if leads is None:
        n = len(available)
        return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(n, MAX_DEFAULT_LEADS))})
    if isinstance(leads, (str, int, float, pd.Timedelta, np.timedelta64)):
        leads = [leads]
    out = []
    for lead in leads:
        td = parse_lead(lead, "leads")
        hits = np.flatnonzero(available == td)
        if hits.size == 0:
            shown = ", ".join(format_lead(a) for a in available[:12]) + (" ..." if len(available) > 12 else "")
            raise UsageError("leads", f"lead time {format_lead(td)} is not in the forecast (it has {shown})")
        out.append(int(hits[0]))
    return out


# ---- drawing -------------------------------------------------------------------------------------

def _map_axes(fig: Figure, rect, grid: _Grid, proj, coast, first: bool):
    if not grid.georef:
        ax = fig.add_axes(rect)
        if first:
            ax.set_ylabel(f"{grid.dims[0]} (row) / {grid.dims[1]} (column)", fontsize=8)
        ax.tick_params(labelsize=7)
        return ax
    ax = fig.add_axes(rect, projection=proj)
    if grid.is_global:
        ax.set_global()
    else:
        ax.set_extent([*grid.lon_range, *grid.lat_range], crs=ccrs.PlateCarree())
    if coast is not None:
        ax.add_feature(coast, zorder=3)
    # global: every 60 degrees on rectangular maps; every 90 where meridians converge (labels would crowd)
    xlocs = np.arange(-180, 181, 60 if isinstance(proj, _RECTANGULAR) else 90) if grid.is_global else None
    ylocs = np.arange(-60, 61, 30) if grid.is_global else None
    style = dict(linewidth=0.4, color="0.4", alpha=0.6, linestyle="--", zorder=4)
    if isinstance(proj, _RECTANGULAR):
        # meridians and parallels are straight: plain axis ticks label them (far cheaper than gridliner labels)
        if xlocs is None:
            x0, x1 = grid.lon_range
            y0, y1 = grid.lat_range
            xlocs = [v for v in LongitudeLocator(nbins=4).tick_values(x0, x1) if x0 <= v <= x1]
            ylocs = [v for v in LatitudeLocator(nbins=5).tick_values(y0, y1) if y0 <= v <= y1]
        ax.set_xticks([v for v in xlocs if abs(v) < 180], crs=ccrs.PlateCarree())  # +-180 would collide
        ax.set_yticks(list(ylocs), crs=ccrs.PlateCarree())
        ax.xaxis.set_major_formatter(LongitudeFormatter())
        ax.yaxis.set_major_formatter(LatitudeFormatter())
        ax.tick_params(labelsize=7, length=2, labelleft=first)
        ax.gridlines(xlocs=xlocs, ylocs=ylocs, **style)
        return ax
    gl = ax.gridlines(draw_labels=True, xlocs=xlocs if grid.is_global else LongitudeLocator(nbins=4),
                      ylocs=ylocs if grid.is_global else LatitudeLocator(nbins=5), x_inline=False, y_inline=False,
                      **style)
    gl.top_labels = False
    gl.right_labels = False
    gl.left_labels = first
    gl.xlabel_style = gl.ylabel_style = {"size": 7}
    return ax


_RECTANGULAR = (ccrs.PlateCarree, ccrs.Mercator, ccrs.Miller, ccrs.LambertCylindrical)


def _draw(ax, grid: _Grid, field: np.ndarray, cmap, norm):
    field = np.ma.masked_invalid(field)  # NaN cells stay blank
    if not grid.georef:
        return ax.imshow(field, origin="upper", cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
    return ax.pcolormesh(grid.lon_edges, grid.lat_edges, field, cmap=cmap, norm=norm,
                         transform=ccrs.PlateCarree(), shading="flat", zorder=1)


def _shared_norm(fields: list[np.ndarray], diverging: bool):
    vals = np.concatenate([f[np.isfinite(f)].ravel() for f in fields]) if fields else np.array([])
    if vals.size == 0:
        return mcolors.Normalize(0, 1), "neither"
    lo, hi = np.percentile(vals, [0.5, 99.5])
    full_lo, full_hi = vals.min(), vals.max()
    if diverging:
        v = max(abs(lo), abs(hi))
        v = v if v > 1e-9 else 1.0  # a perfect forecast: any symmetric scale will do
        lo, hi = -v, v
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (bool(full_lo < lo), bool(full_hi > hi))]
    return mcolors.Normalize(lo, hi), extend


def render_forecast_map(forecast: xr.Dataset, var: str, lead_index: int, out_png: str | Path,
                        truth: xr.Dataset | None = None, projection="PlateCarree", init_index: int = -1,
                        dpi: int = DPI) -> Path:
    """One PNG: observed at init | forecast | truth at valid time | forecast - truth (truth panels when known)."""
    attrs = dict(forecast[var].attrs)
    grid = _Grid(forecast, var)
    proj = None
    if grid.georef:
        proj = get_projection(projection, grid.centre, regional=not grid.is_global)
    elif projection not in ("PlateCarree", None):
        log.info("%s has no latitude/longitude; drawing it on its grid, not in %s", var, projection)
    init = forecast["init_time"].values[init_index]
    lead = forecast["lead_time"].values[lead_index]
    valid = pd.Timestamp(init) + pd.Timedelta(lead)
    fc = np.asarray(forecast[var].isel(init_time=init_index, lead_time=lead_index).values, dtype="float64")
    obs = _truth_frame(truth, var, init, fc.shape)
    tru = _truth_frame(truth, var, valid, fc.shape)

    panels = []  # (title, field, kind)
    if obs is not None:
        panels.append((f"Observed at init\n{format_time(init)}", obs, "value"))
    panels.append((f"Forecast {format_lead(lead)}\nvalid {format_time(valid)}", fc, "value"))
    if tru is not None:
        panels.append((f"Truth\n{format_time(valid)}", tru, "value"))
        err = fc - tru
        rmse = float(np.sqrt(np.nanmean(err**2)))
        bias = float(np.nanmean(err))
        u = attrs.get("units", "")
        panels.append((f"Error: forecast \u2212 truth\nRMSE {rmse:.3g} {u}, bias {bias:+.2g} {u}", err, "error"))

    coast = None
    if grid.georef:
        coast = coastline_feature("110m" if grid.is_global else "50m", faint=grid.small, bbox=grid.read_bbox())
    notes = []
    if coast is not None and grid.small:
        notes.append("coastline: Natural Earth 1:50m, a rough outline at this scale")
    if _extent_attr(forecast).get("approximate"):
        notes.append("grid position approximate (the data carry no coordinates; extent from the catalog)")

    # fixed layout in inches (constrained layout would draw every gridliner twice: slow on curved projections)
    n = len(panels)
    aspect = grid.aspect(proj)
    pw = max(PANEL_INCHES, (6.5 - _LEFT - _RIGHT) / n)  # a lone panel is widened to fit the title
    ph = pw * aspect
    bottom = _TICKS + _CBAR + (_NOTE if notes else 0.0)
    width = _LEFT + n * pw + (n - 1) * _GAP + _RIGHT
    height = _TOP + _TITLE + ph + bottom
    fig = Figure(figsize=(width, height), dpi=dpi)

    def rect(x0, y0, w, h):  # inches from the bottom left -> figure fractions
        return [x0 / width, y0 / height, w / width, h / height]

    cmap, diverging = _cmap_for(attrs, var)
    norm, extend = _shared_norm([f for _, f, k in panels if k == "value"], diverging)
    spans = {"value": [], "error": []}
    meshes = {}
    for k, (title, field, kind) in enumerate(panels):
        x0 = _LEFT + k * (pw + _GAP)
        ax = _map_axes(fig, rect(x0, bottom, pw, ph), grid, proj, coast, first=(k == 0))
        if kind == "value":
            meshes["value"] = (_draw(ax, grid, field, cmap, norm), extend)
        else:
            enorm, eextend = _shared_norm([field], diverging=True)
            meshes["error"] = (_draw(ax, grid, field, "RdBu_r", enorm), eextend)
        spans[kind].append(x0)
        ax.set_title(title, fontsize=9, pad=4)
    labels = {"value": f"{var}{_units_label(attrs)}", "error": f"forecast \u2212 truth{_units_label(attrs)}"}
    for kind, (mesh, ext) in meshes.items():
        x0, x1 = spans[kind][0], spans[kind][-1] + pw
        shrink = 0.8 if len(spans[kind]) > 1 else 0.9
        w = (x1 - x0) * shrink
        cax = fig.add_axes(rect(x0 + (x1 - x0 - w) / 2, bottom - _TICKS - 0.17, w, 0.15))
        cb = fig.colorbar(mesh, cax=cax, orientation="horizontal", extend=ext)
        cb.set_label(labels[kind], fontsize=9, labelpad=2)
        cb.ax.tick_params(labelsize=8)

    zone = json.loads(forecast.attrs.get("properties", "{}")).get("time_zone", "")
    long_name = attrs.get("long_name", var)
    name = long_name if long_name.lower().startswith(var.lower()) else f"{long_name} ({var})"
    dataset = forecast.attrs.get("dataset", "")
    fig.suptitle(f"{name}{_units_label(attrs)}  \u2013  {dataset}\n"
                 f"init {format_time(init, zone)}   lead {format_lead(lead)}   valid {format_time(valid, zone)}",
                 fontsize=11, y=1 - 0.08 / height, va="top")
    if notes:
        fig.text(0.5, 0.06 / height, "; ".join(notes), fontsize=7, color="0.35", ha="center", va="bottom")
    return _save(fig, Path(out_png))


def _extent_attr(ds: xr.Dataset) -> dict:
    try:
        return json.loads(ds.attrs.get("extent", "null")) or {}
    except (TypeError, ValueError):
        return {}


def render_forecast_maps(forecast: xr.Dataset, out_dir: str | Path, truth: xr.Dataset | None = None, leads=None,
                         variables=None, projection="PlateCarree", init_index: int = -1, dpi: int = DPI) -> list[Path]:
    """PNG maps `<out_dir>/<variable>_lead<HH>h.png` (`..._lead<HH>h<MM>m.png` for sub-hourly leads) for one
    init time (init_index, default the last), every chosen variable and lead.

    truth: the store (time, channel, ...) to take the observed frame at init time and the truth at the valid
    time from; panels it does not cover are left out. leads: None (up to four, first to last), or lead times
    as hours (6, 0.5), strings ("30min", "6h") or timedeltas. variables: channel names (default all).
    projection: a cartopy.crs class name or instance.
    """
    out_dir = Path(out_dir)
    names = forecast_variables(forecast)
    if variables is not None:
        variables = [variables] if isinstance(variables, str) else list(variables)
        unknown = [v for v in variables if v not in names]
        if unknown:
            raise UsageError("variables", f"{unknown} not in the forecast (it has {names})")
        names = variables
    lead_idx = select_leads(forecast, leads)
    if init_index < -forecast.sizes["init_time"] or init_index >= forecast.sizes["init_time"]:
        raise ValueError(f"init_index {init_index} out of range: the forecast has {forecast.sizes['init_time']} "
                         "init times")
    if names and "lat" in forecast.coords:  # fail on a bad projection name before drawing anything
        get_projection(projection)
    paths = []
    for var in names:
        for j in lead_idx:
            png = out_dir / f"{var}_lead{lead_label(forecast['lead_time'].values[j])}.png"
            paths.append(render_forecast_map(forecast, var, j, png, truth=truth, projection=projection,
                                             init_index=init_index, dpi=dpi))
    return paths


# ---- metrics by lead time ------------------------------------------------------------------------

def _units_of(metrics: dict, forecasters: list[str]) -> str:
    cands = [metrics.get("units")] + [metrics[f].get("units") for f in forecasters]
    for u in cands:
        if isinstance(u, str) and u:
            return u
        if isinstance(u, dict) and len(set(u.values())) == 1:
            return next(iter(u.values()))
    return ""


def _as_float(v) -> float:
    """Metric values as floats: None (JSON null) -> NaN, "inf" -> inf, anything unreadable -> NaN."""
    try:
        return float(v) if v is not None and not isinstance(v, bool) else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def metric_forecasters(metrics: dict, metric: str) -> list[str]:
    """Keys of `metrics` that are forecasters with a per-lead series of `metric`."""
    return [k for k in table_forecasters(metrics)
            if isinstance(metrics[k].get("by_lead"), dict) and metrics[k]["by_lead"].get(metric) is not None]


def lead_metrics_plot(metrics: dict, out_png: str | Path, metric: str = "rmse", lead_hours=None,
                      units: str | None = None, title: str | None = None, dpi: int = DPI,
                      trained_hours: float | None = None) -> Path:
    """Line plot of `metric` against lead time, one line per forecaster (model and baselines).

    Lead times in hours (in minutes when every lead is within 3 h); where the leads go beyond the model's
    trained horizon (`trained_hours`: reached by rollout) that horizon is marked.

    metrics: {"model": {"rmse": 1.2, "by_lead": {"rmse": [...], "mae": [...]}}, "persistence": {...}, ...};
    lead times from lead_hours, else metrics["lead_hours"] (or a forecaster's), else 1..L steps.
    Units from `units`, else metrics["units"] (or a forecaster's).
    """
    forecasters = metric_forecasters(metrics, metric)
    if not forecasters:
        raise ValueError(f"no forecaster in the metrics has a per-lead {metric!r} series "
                         f"(keys: {sorted(metrics)})")
    if lead_hours is None:
        lead_hours = metrics.get("lead_hours") or next(
            (metrics[f]["lead_hours"] for f in forecasters if metrics[f].get("lead_hours")), None)
    if trained_hours is None:
        trained_hours = next((metrics[f]["trained_hours"] for f in forecasters if metrics[f].get("trained_hours")),
                             None)
    units = units if units is not None else _units_of(metrics, forecasters)
    scale, unit_name = 1.0, "hours"
    if lead_hours is not None and len(lead_hours) and max(lead_hours) <= 3:
        scale, unit_name = 60.0, "minutes"
    fig = Figure(figsize=(7.5, 4.5), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    all_positive = True
    for name in forecasters:
        y = np.array([_as_float(v) for v in metrics[name]["by_lead"][metric]])
        x = (np.asarray(lead_hours, dtype=float)[: len(y)] * scale if lead_hours is not None
             else np.arange(1, len(y) + 1))
        line = style(name)
        line.setdefault("markersize", 4)
        overall = _as_float(metrics[name].get(metric))
        text = label(name) + (f" ({overall:.3g})" if np.isfinite(overall) else "")
        ax.plot(x[: len(y)], y[: len(x)], label=text, **line)
        band = metrics[name].get("intervals", {}).get(metric, {}).get("by_lead") if name == "model" else None
        if band:
            lo, hi = (np.array([_as_float(b[i]) for b in band]) for i in (0, 1))
            n = min(len(x), len(lo))
            ax.fill_between(x[:n], lo[:n], hi[:n], color=line["color"], alpha=0.18, linewidth=0,
                            label="model: 95% interval")
        all_positive &= bool(np.all(y[np.isfinite(y)] >= 0))
    if lead_hours is not None and trained_hours and max(lead_hours) > trained_hours:
        text = f"{trained_hours:g} h" if scale == 1 else f"{trained_hours * 60:g} min"
        ax.axvline(trained_hours * scale, color="0.4", linestyle=":", linewidth=1.2,
                   label=f"trained horizon ({text}); rollout beyond")
    ax.set_xlabel(f"lead time ({unit_name})" if lead_hours is not None else "lead time (steps)")
    ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)}" + (f" [{units}]" if units else ""))
    ax.grid(True, alpha=0.3)
    if all_positive:
        ax.set_ylim(bottom=0)
    ax.legend(title=f"forecaster (overall {METRIC_NAMES.get(metric, metric)})", fontsize=9, title_fontsize=9)
    ax.set_title(title or f"{METRIC_NAMES.get(metric, metric)} by lead time", fontsize=11)
    return _save(fig, Path(out_png))
