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
- Every forecaster is scored on the same pairs: the model (the archive) and the reference forecasts of the
  scoring room (pipelines/scoring/forecasters.py: persistence, previous day, climatology, fitted linear). A pair
  is scored when its truth and every frame the reference forecasts need are in the store.
- Metrics, regions, intervals and the scorecard are the scoring room's (pipelines/scoring), as in evaluation.

Outputs, in one folder replaced whole (kind "verification", default `<output root>/verification/<dataset>/`):

    verification.json      what was scored (counts) and the scores: overall, by lead, by init time and lead
    verification.nc        the scores dataset (forecaster x lead_time x channel x region, intervals, skill) and
                           per pair (forecaster, init_time, lead_time) with NaN where a pair was not scored
    verification.html/.md  the page: tables (report/tables.py) and the plot of skill over init time per lead
    skill_<metric>.png, scorecard.png
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
from data_catalog.schema import Scoring
from ..forecast.archive import open_archive, reading_archive
from ..forecast.output import forecast_variables
from ..outputs import claim, ensure_writable, write_atomic
from ..report.verification import FILES, read_verification, summary_line  # noqa: F401 (the verify stage's files)
from ..scoring import BASELINES, ArchivedForecast, Batch, Room, check_reference, json_safe, main_metric, results
from ..specs import VerifySpec
from ..store import open_store, reading
from ..timeaxis import ns
from ..timefmt import iso_minutes

POLICY = ("Each (init time, lead time) pair is scored once its valid time is in the store: a forecast whose "
          "truth has partly arrived is scored at the leads whose truth is in. Valid times missing from the store "
          "are skipped (not scored), later ones await their truth. Model and baselines are scored on the same "
          "pairs (those whose truth, init-time frame and previous-day frame are in the store).")


class NothingToVerify(InputError):
    """No archived forecast has a scorable valid time in the store (yet)."""


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


def pair_status(archive: xr.Dataset, room: Room) -> dict[str, np.ndarray]:
    """Masks (init_time, lead_time) of the archived pairs: scored, awaiting truth (after the store's last time),
    missing (a valid time the store lacks), no_reference (truth in, but a frame a reference forecast needs not)."""
    init_ns = ns(pd.DatetimeIndex(archive["init_time"].values))
    made = archive["has_forecast"].values.astype(bool)
    valid = room.valid_ns(init_ns)
    truth = room.frames.index(valid)
    times = room.frames.times
    last = ns(times)[-1] if len(times) else np.iinfo(np.int64).min
    reference = room.available(room.references, init_ns)
    awaiting = made & (truth < 0) & (valid > last)
    missing = made & (truth < 0) & ~awaiting
    return {"scored": made & (truth >= 0) & reference, "awaiting_truth": awaiting, "missing_in_store": missing,
            "no_reference_frames": made & (truth >= 0) & ~reference, "forecast": made}


def scorable(archive: xr.Dataset, store: xr.Dataset, scoring: Scoring | None = None
             ) -> tuple[Room, dict[str, np.ndarray]]:
    """The scoring room and the pair masks (`pair_status`); NothingToVerify when no pair can be scored."""
    inits = pd.DatetimeIndex(archive["init_time"].values)
    leads = pd.TimedeltaIndex(archive["lead_time"].values)
    step = pd.Timedelta(store.attrs["time_step"])
    room = Room(store, (leads // step).astype(np.int64), "cpu", scoring)
    status = pair_status(archive, room)
    if not status["scored"].any():
        counts = {k: int(v.sum()) for k, v in status.items()}
        times = room.frames.times
        store_span = f"{iso_minutes(times[0])} .. {iso_minutes(times[-1])}" if len(times) else "no times"
        raise NothingToVerify(store.encoding.get("source", "store"),
                              f"no archived forecast has a valid time in the store yet (store {store_span}; "
                              f"{len(inits)} forecasts from {iso_minutes(inits[0])} .. {iso_minutes(inits[-1])}: "
                              f"{counts['awaiting_truth']} lead times await their truth, "
                              f"{counts['missing_in_store']} fall on missing times, "
                              f"{counts['no_reference_frames']} lack a frame the reference forecasts need); "
                              "nothing to verify")
    return room, status


def score(archive: xr.Dataset, store: xr.Dataset, names: list[str], batch_size: int = 16, plan=None,
          reference: str | None = None, scoring: Scoring | None = None) -> dict:
    """Scores of the archive's scorable pairs next to the reference forecasts: {"metrics": {forecaster: result,
    "scorecard": ...}, "by_init": {...}, "counts": {...}, ...} and the scores dataset under "dataset". Raises
    NothingToVerify when no pair can be scored. plan: what `scorable` returned, when called already."""
    room, status = plan or scorable(archive, store, scoring)
    inits = pd.DatetimeIndex(archive["init_time"].values)
    scored = status["scored"]
    counts = {k: int(v.sum()) for k, v in status.items()}
    init_ns = ns(inits)
    truth_idx = room.frames.index(room.valid_ns(init_ns))

    def read(rows):
        return np.stack([archive[v].isel(init_time=rows).values for v in names], axis=2)

    forecasters = [ArchivedForecast(read, status["forecast"], room.device), *room.references]
    rows_with_pairs = np.flatnonzero(scored.any(axis=1))

    def batches():
        for b0 in range(0, rows_with_pairs.size, batch_size):
            rows = rows_with_pairs[b0:b0 + batch_size]
            mask = scored[rows]
            batch = Batch(rows, init_ns[rows], room.valid_ns(init_ns[rows]), mask, extra={"archive_rows": rows})
            yield batch, room.frames.take(np.where(mask, truth_idx[rows], -1))

    with reading(store.encoding.get("source", "store")), reading(archive.encoding.get("source", "archive")):
        scores = room.score(forecasters, batches(), init_ns)
        ds = scores.dataset(reference)
    metrics = results(ds)
    hours = scores.lead_hours
    for f, r in metrics.items():
        if f != "scorecard":
            r["lead_hours"] = hours
    active = scores.active
    main = main_metric(scores.tally.metrics)
    by_init = {"init_times": [t.isoformat() for t in inits[active]], "scored": scored[active].tolist()}
    for m in dict.fromkeys([main, "rmse", "mae"]):
        for f, table in scores.by_init(m).items():
            by_init.setdefault(f, {})[m] = table
    complete = scored[active].sum(axis=1) == status["forecast"][active].sum(axis=1)
    counts.update(init_times=len(inits), verified_init_times=int(active.size), complete_init_times=int(complete.sum()),
                  partly_verified_init_times=int((~complete).sum()),
                  unverified_init_times=int(len(inits) - active.size))
    return {"metrics": metrics, "by_init": by_init, "counts": counts, "lead_hours": hours,
            "first_init_time": inits[active[0]].isoformat(), "last_init_time": inits[active[-1]].isoformat(),
            "time_step": store.attrs["time_step"], "channels": names, "main_metric": main,
            "reference": ds.attrs["reference"], "regions": list(ds["region"].values),
            "units": {c: str(u) for c, u in zip(names, store["units"].values)}, "dataset_scores": ds}


def verification_dataset(result: dict, scores: xr.Dataset) -> xr.Dataset:
    """The scores dataset (scoring/engine.py: forecaster x lead_time x channel x region, intervals, skill) and, per
    pair, the main metric, RMSE and MAE (forecaster, init_time, lead_time) with NaN where a pair was not scored
    (see `scored`)."""
    by_init = result["by_init"]
    names = [str(f) for f in scores["forecaster"].values]
    inits = pd.DatetimeIndex(by_init["init_times"])
    data = {}
    for m in {k for f in names for k in by_init.get(f, {})}:
        table = [[[np.nan if v is None else float(v) for v in row] for row in by_init[f][m]] for f in names]
        data[f"{m}_by_init"] = (("forecaster", "init_time", "lead_time"), np.array(table, "float64"),
                                {"long_name": f"{m} of each scored (init time, lead time) pair; NaN: not scored"})
    data["scored"] = (("init_time", "lead_time"), np.array(by_init["scored"], dtype="int8"),
                      {"long_name": "1 where the pair was scored", "flag_values": np.array([0, 1], "int8"),
                       "flag_meanings": "not_scored scored"})
    ds = scores.assign(data).assign_coords(init_time=inits.values)
    ds.attrs = {**scores.attrs, "policy": POLICY,
                **{k: v for k, v in result.items() if isinstance(v, (str, int, float)) and k not in scores.attrs},
                "counts": json.dumps(result["counts"]), "units": json.dumps(result["units"])}
    return ds


def write_verification(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """One verification folder, replaced whole: verification.json, .nc, .html, .md and the plots."""
    from .page import render_page

    out_dir = Path(out_dir)
    scores = result.pop("dataset_scores")

    def build(tmp: Path) -> None:
        tmp.mkdir()
        finite = json_safe(result)
        verification_dataset(result, scores).to_netcdf(tmp / FILES["netcdf"], engine="netcdf4")
        html, markdown, plots = render_page(finite, tmp)
        (tmp / FILES["json"]).write_text(json.dumps({**finite, **plots}, indent=2))
        (tmp / FILES["html"]).write_text(html, encoding="utf-8")
        (tmp / FILES["markdown"]).write_text(markdown, encoding="utf-8")
        result.update(plots)

    write_atomic(out_dir, build, "verification")
    paths = {k: out_dir / v for k, v in FILES.items()}
    for key in ("plot", "scorecard_plot"):
        if result.get(key):
            paths[key] = out_dir / result[key]
    return {**paths, "dir": out_dir}


def run(spec: VerifySpec) -> dict:
    """Score every archived forecast of spec.dataset whose valid times are in the store, next to the reference
    forecasts; write the verification folder. Returns {"result": scores, "paths": {json, netcdf, html, markdown,
    plot, scorecard_plot, dir}}."""
    claim(spec.out, "verification")
    check_reference(spec.reference, ["model", *BASELINES])
    with reading_archive(spec.archive_path), open_archive(spec.archive_path, spec.dataset) as archive:
        store = open_store(spec.store)
        names = _check_pair(archive, store, spec.archive_path, spec.store, spec.dataset)
        plan = scorable(archive, store, spec.scoring)  # nothing to verify: said before anything is written
        ensure_writable(spec.out.parent)
        result = score(archive, store, names, spec.batch_size, plan, spec.reference, spec.scoring)
    result = {"dataset": spec.dataset, "archive": str(spec.archive_path), "store": str(spec.store),
              "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "simcast_version": __version__, "policy": POLICY, **result}
    return {"result": result, "paths": write_verification(result, spec.out)}
