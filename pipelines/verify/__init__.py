"""Verification: the archived forecasts of a data set whose valid times are now in the store, scored next to the
baselines for the same init times, by lead time and by init time.

    result = pipelines.verify.run(VerifySpec.from_catalog("era5-uk-t2m"))

What is scored:

- Each (init time, lead time) pair on its own, as soon as its valid time is in the store. A forecast whose truth
  has partly arrived is scored at the leads whose truth is in, and at the others by a later run. Scores by lead
  pool the init times scored at that lead; scores by init time are kept per lead (never averaged over a set of
  leads that changes as the truth arrives); the overall scores pool every scored pair.
- A valid time missing from the store (in its `missing_times`, or before it begins) is skipped and counted, not
  scored as NaN; one after the store's last time awaits its truth.
- Every forecaster is scored on the same pairs: the model (the archive), persistence (the frame at init time),
  the previous day (the same hours on the last day observed at init time) and the climatology by time of day of
  the training period (pipelines/evaluate/baselines.py). A pair is scored when its truth, the frame at init time
  and the previous-day frame are all in the store.
- Metrics are the evaluation's (pipelines/evaluate/metrics.py, MetricAccumulator): RMSE and MAE in physical
  units, cos-latitude weighted RMSE/MAE and ACC on lon/lat grids, the paper convention and SSIM/PSNR where the
  data set declares image metrics.

Outputs, in one folder replaced whole (kind "verification", default `<output root>/verification/<dataset>/`):

    verification.json      what was scored (counts) and the scores: overall, by lead, by init time and lead
    verification.nc        the same as arrays: (forecaster), (forecaster, lead_time), (forecaster, init_time,
                           lead_time) with NaN where a pair was not scored and `scored` saying which were
    verification.html/.md  the page: tables (report/tables.py) and the plot of skill over init time per lead
    skill_<metric>.png
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from ..errors import InputError
from ..evaluate.baselines import BaselinesAt
from ..evaluate.metrics import MetricAccumulator, json_safe
from ..forecast.archive import open_archive, reading_archive
from ..forecast.output import forecast_variables
from ..outputs import claim, ensure_writable, write_atomic
from ..specs import VerifySpec
from ..store import open_store, properties, reading, store_stats
from ..timeaxis import ns
from ..timefmt import iso_minutes

FORECASTERS = ("model", "persistence", "previous_day", "climatology")
FILES = {"json": "verification.json", "netcdf": "verification.nc", "html": "verification.html",
         "markdown": "verification.md"}
POLICY = ("Each (init time, lead time) pair is scored once its valid time is in the store: a forecast whose "
          "truth has partly arrived is scored at the leads whose truth is in. Valid times missing from the store "
          "are skipped (not scored), later ones await their truth. Model and baselines are scored on the same "
          "pairs (those whose truth, init-time frame and previous-day frame are in the store).")


class NothingToVerify(InputError):
    """No archived forecast has a scorable valid time in the store (yet)."""


def accumulators(ds: xr.Dataset, channels: list[str]):
    """make(leads) -> a MetricAccumulator as the evaluation builds it (pipelines/evaluate): latitudes on lon/lat
    grids, the training min/max and SSIM/PSNR where the data set declares image metrics."""
    props = properties(ds)
    lat = ds["lat"].values.copy() if "lat" in ds.dims else None
    image = bool(props.get("image_metrics")) and min(ds["data"].shape[2:]) >= 7
    stats = store_stats(ds)
    scale = (stats["min"], stats["max"]) if props.get("image_metrics") else None
    return lambda leads: MetricAccumulator(leads, channels, lat=lat, scale=scale, image_metrics=image)


def _check_pair(archive: xr.Dataset, store: xr.Dataset, archive_path, store_path, dataset: str) -> list[str]:
    held = store.attrs.get("dataset")
    if held != dataset:
        raise InputError(store_path, f"is the store of {held!r}, not {dataset!r}")
    names = forecast_variables(archive)
    channels = [str(c) for c in store["channel"].values]
    if names != channels:
        raise InputError(archive_path, f"holds channels {names}; the store {store_path} has {channels}")
    grid, space = tuple(store["data"].shape[2:]), tuple(archive[names[0]].shape[2:])
    if grid != space:
        raise InputError(archive_path, f"holds forecasts on a {'x'.join(map(str, space))} grid; the store "
                                       f"{store_path} is {'x'.join(map(str, grid))}")
    step = pd.Timedelta(store.attrs["time_step"])
    leads = pd.TimedeltaIndex(archive["lead_time"].values)
    if (leads % step != pd.Timedelta(0)).any():
        raise InputError(archive_path, f"holds lead times that are not whole steps of the store's "
                                       f"{store.attrs['time_step']}")
    return names


def pair_status(archive: xr.Dataset, base: BaselinesAt) -> dict[str, np.ndarray]:
    """Masks (init_time, lead_time) of the archived pairs: scored, awaiting truth (after the store's last time),
    missing (a valid time the store lacks), no_reference (truth in, but the init-time or previous-day frame not)."""
    init_ns = ns(pd.DatetimeIndex(archive["init_time"].values))
    made = archive["has_forecast"].values.astype(bool)
    truth = base.truth_index(init_ns)
    valid = base.valid_ns(init_ns)
    last = ns(base.times)[-1] if len(base.times) else np.iinfo(np.int64).min
    reference = (base.previous_day_index(init_ns) >= 0) & (base.init_index(init_ns) >= 0)[:, None]
    awaiting = made & (truth < 0) & (valid > last)
    missing = made & (truth < 0) & ~awaiting
    return {"scored": made & (truth >= 0) & reference, "awaiting_truth": awaiting, "missing_in_store": missing,
            "no_reference_frames": made & (truth >= 0) & ~reference, "forecast": made}


def scorable(archive: xr.Dataset, store: xr.Dataset) -> tuple[BaselinesAt, dict[str, np.ndarray]]:
    """The baselines' frame lookup and the pair masks (`pair_status`); NothingToVerify when no pair can be
    scored. Cheap: coordinates only."""
    inits = pd.DatetimeIndex(archive["init_time"].values)
    leads = pd.TimedeltaIndex(archive["lead_time"].values)
    step = pd.Timedelta(store.attrs["time_step"])
    base = BaselinesAt(store, (leads // step).astype(np.int64))
    status = pair_status(archive, base)
    if not status["scored"].any():
        counts = {k: int(v.sum()) for k, v in status.items()}
        store_span = (f"{iso_minutes(base.times[0])} .. {iso_minutes(base.times[-1])}" if len(base.times)
                      else "no times")
        raise NothingToVerify(store.encoding.get("source", "store"),
                              f"no archived forecast has a valid time in the store yet (store {store_span}; "
                              f"{len(inits)} forecasts from {iso_minutes(inits[0])} .. {iso_minutes(inits[-1])}: "
                              f"{counts['awaiting_truth']} lead times await their truth, "
                              f"{counts['missing_in_store']} fall on missing times, "
                              f"{counts['no_reference_frames']} lack the init-time or previous-day frame); "
                              "nothing to verify")
    return base, status


def score(archive: xr.Dataset, store: xr.Dataset, names: list[str], batch_size: int = 16, plan=None) -> dict:
    """Scores of the archive's scorable pairs next to the baselines: {"metrics": {forecaster: result},
    "by_init": {...}, "counts": {...}, ...}. Raises NothingToVerify when no pair can be scored. plan: what
    `scorable` returned, when called already."""
    base, status = plan or scorable(archive, store)
    inits = pd.DatetimeIndex(archive["init_time"].values)
    leads = pd.TimedeltaIndex(archive["lead_time"].values)
    scored = status["scored"]
    counts = {k: int(v.sum()) for k, v in status.items()}
    rows = np.flatnonzero(scored.any(axis=1))
    channels, n_leads = names, len(leads)
    lonlat = "lat" in store.dims
    make = accumulators(store, channels)
    overall = {f: make(1) for f in FORECASTERS}
    by_lead = {f: [make(1) for _ in range(n_leads)] for f in FORECASTERS}
    cells = {f: {} for f in FORECASTERS}  # forecaster -> metric -> (rows, leads) array, NaN where not scored
    init_ns = ns(inits)
    truth_idx, prev_idx, init_idx = (base.truth_index(init_ns), base.previous_day_index(init_ns),
                                     base.init_index(init_ns))
    with reading(store.encoding.get("source", "store")), reading(archive.encoding.get("source", "archive")):
        for b0 in range(0, rows.size, batch_size):
            batch = rows[b0:b0 + batch_size]
            mask = scored[batch]
            pred = np.stack([archive[v].isel(init_time=batch).values for v in names], axis=2).astype("float32")
            truth = base.take(np.where(mask, truth_idx[batch], -1))
            clim = base.climatology(init_ns[batch])
            forecasts = {"model": pred, "persistence": base.persistence(init_idx[batch]),
                         "previous_day": base.previous_day(np.where(mask, prev_idx[batch], -1)), "climatology": clim}
            b, k = np.nonzero(mask)
            for f, x in forecasts.items():
                overall[f].update(x[b, k][:, None], truth[b, k][:, None],
                                  clim[b, k][:, None] if lonlat else None)
                for lead in np.flatnonzero(mask.any(axis=0)):
                    r = np.flatnonzero(mask[:, lead])
                    by_lead[f][lead].update(x[r, lead][:, None], truth[r, lead][:, None],
                                            clim[r, lead][:, None] if lonlat else None)
                # each scored pair of the batch on its own: one sample whose "leads" are the pairs
                cell = make(len(b))
                cell.update(x[b, k][None], truth[b, k][None], clim[b, k][None] if lonlat else None)
                for metric, values in cell.result()["by_lead"].items():
                    table = cells[f].setdefault(metric, np.full((rows.size, n_leads), np.nan))
                    table[b0 + b, k] = values
    hours = [round(td.total_seconds() / 3600, 6) for td in leads]
    metrics = {f: _result(overall[f], by_lead[f], hours) for f in FORECASTERS}
    by_init = {"init_times": [t.isoformat() for t in inits[rows]], "scored": scored[rows].tolist(),
               **{f: {m: [[None if np.isnan(v) else float(v) for v in row] for row in table]
                      for m, table in cells[f].items()} for f in FORECASTERS}}
    complete = scored[rows].sum(axis=1) == status["forecast"][rows].sum(axis=1)
    counts.update(init_times=len(inits), verified_init_times=int(rows.size), complete_init_times=int(complete.sum()),
                  partly_verified_init_times=int((~complete).sum()),
                  unverified_init_times=int(len(inits) - rows.size))
    return {"metrics": metrics, "by_init": by_init, "counts": counts, "lead_hours": hours,
            "first_init_time": inits[rows[0]].isoformat(), "last_init_time": inits[rows[-1]].isoformat(),
            "time_step": store.attrs["time_step"], "channels": channels,
            "units": {c: str(u) for c, u in zip(channels, store["units"].values)}}


def _result(overall: MetricAccumulator, per_lead: list[MetricAccumulator], hours: list[float]) -> dict:
    """A forecaster's scores as the evaluation writes them (metrics.json), by lead from per-lead accumulators:
    a lead nobody could score yet is None."""
    out = overall.result()
    leads = [a.result() if a.n else None for a in per_lead]
    keys = [k for k in out["by_lead"]]
    out["by_lead"] = {k: [r[k] if r else None for r in leads] for k in keys}
    out["by_channel"] = {c: {k: v for k, v in r.items() if k != "by_lead"} for c, r in out["by_channel"].items()}
    out["samples_by_lead"] = [a.n for a in per_lead]
    out["lead_hours"] = hours
    return out


def main_metric(result: dict) -> str:
    """The metric the page plots and tabulates by lead: lat-weighted RMSE on lon/lat grids, else RMSE."""
    return "rmse_weighted" if "rmse_weighted" in result["metrics"]["model"]["by_lead"] else "rmse"


def verification_dataset(result: dict) -> xr.Dataset:
    """The scores as arrays: overall (forecaster), by lead (forecaster, lead_time), per pair (forecaster,
    init_time, lead_time) with NaN where the pair was not scored (see `scored`)."""
    names = list(result["metrics"])
    leads = pd.to_timedelta(result["lead_hours"], unit="h")
    inits = pd.DatetimeIndex(result["by_init"]["init_times"])
    keys = list(result["metrics"][names[0]]["by_lead"])
    num = lambda v: np.nan if v is None else float(v)  # noqa: E731
    data = {}
    for k in keys:
        data[k] = (("forecaster", "init_time", "lead_time"),
                   np.array([[[num(v) for v in row] for row in result["by_init"][n][k]] for n in names], "float64"),
                   {"long_name": f"{k} of each scored (init time, lead time) pair; NaN: not scored"})
        data[f"{k}_by_lead"] = (("forecaster", "lead_time"),
                                np.array([[num(v) for v in result["metrics"][n]["by_lead"][k]] for n in names]))
        data[f"{k}_overall"] = (("forecaster",), np.array([num(result["metrics"][n][k]) for n in names]))
    data["scored"] = (("init_time", "lead_time"), np.array(result["by_init"]["scored"], dtype="int8"),
                      {"long_name": "1 where the pair was scored", "flag_values": np.array([0, 1], "int8"),
                       "flag_meanings": "not_scored scored"})
    data["samples"] = (("lead_time",), np.array(result["metrics"][names[0]]["samples_by_lead"], dtype="int64"),
                       {"long_name": "init times scored at this lead"})
    ds = xr.Dataset(data, coords={"forecaster": names, "init_time": inits.values, "lead_time": leads.values})
    ds.attrs = {"convention": result["metrics"][names[0]]["convention"], "policy": POLICY,
                **{k: v for k, v in result.items() if isinstance(v, (str, int, float))},
                "counts": json.dumps(result["counts"]), "units": json.dumps(result["units"])}
    return ds


def write_verification(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """One verification folder, replaced whole: verification.json, .nc, .html, .md and the skill plot."""
    from .page import render_page

    out_dir = Path(out_dir)

    def build(tmp: Path) -> None:
        tmp.mkdir()
        finite = json_safe(result)
        verification_dataset(result).to_netcdf(tmp / FILES["netcdf"], engine="netcdf4")
        html, markdown, plot = render_page(finite, tmp)
        (tmp / FILES["json"]).write_text(json.dumps({**finite, "plot": plot}, indent=2))
        (tmp / FILES["html"]).write_text(html, encoding="utf-8")
        (tmp / FILES["markdown"]).write_text(markdown, encoding="utf-8")
        result["plot"] = plot

    write_atomic(out_dir, build, "verification")
    paths = {k: out_dir / v for k, v in FILES.items()}
    if result.get("plot"):
        paths["plot"] = out_dir / result["plot"]
    return {**paths, "dir": out_dir}


def run(spec: VerifySpec) -> dict:
    """Score every archived forecast of spec.dataset whose valid times are in the store, next to the baselines;
    write the verification folder. Returns {"result": scores, "paths": {json, netcdf, html, markdown, plot, dir}}."""
    claim(spec.out, "verification")
    with reading_archive(spec.archive_path), open_archive(spec.archive_path, spec.dataset) as archive:
        store = open_store(spec.store)
        names = _check_pair(archive, store, spec.archive_path, spec.store, spec.dataset)
        plan = scorable(archive, store)  # nothing to verify: said before anything is written
        ensure_writable(spec.out.parent)
        result = score(archive, store, names, spec.batch_size, plan)
    result = {"dataset": spec.dataset, "archive": str(spec.archive_path), "store": str(spec.store),
              "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "simcast_version": __version__, "policy": POLICY, "main_metric": "", **result}
    result["main_metric"] = main_metric(result)
    return {"result": result, "paths": write_verification(result, spec.out)}


def read_verification(folder: str | Path) -> dict:
    """verification.json of a verification folder; one line when it is not one."""
    path = Path(folder) / FILES["json"]
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(folder, "holds no verification.json (written by simcast verify)") from None
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable verification file ({e})") from None


def summary_line(result: dict) -> str:
    """One sentence: what was verified and how the model compares with persistence on the main metric."""
    from ..report.tables import METRIC_NAMES

    c, metric = result["counts"], result.get("main_metric", "rmse")
    units = set(result.get("units", {}).values())
    unit = f" {units.pop()}" if len(units) == 1 else ""
    m = result["metrics"]
    text = (f"{c['verified_init_times']} of {c['init_times']} archived forecasts verified "
            f"({result['first_init_time'][:16]} .. {result['last_init_time'][:16]}, {c['scored']} lead times)")
    model, persistence = m["model"].get(metric), m.get("persistence", {}).get(metric)
    if isinstance(model, (int, float)) and isinstance(persistence, (int, float)):
        text += f"; {METRIC_NAMES.get(metric, metric)} model {model:.4g}{unit}, persistence {persistence:.4g}{unit}"
    return text + "."
