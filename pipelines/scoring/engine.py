"""The scoring loop and its result: every forecaster through one loop, one tally, one scores dataset.

    room = Room(store_ds, lead_steps, device, scoring=entry.scoring)
    scores = room.score([model, *room.references], batches, init_ns)
    ds = scores.dataset()            # metric x forecaster x lead_time x channel x region, intervals, skill
    results = scores.results()       # the same as JSON-ready dicts per forecaster (tables, plots, pages)

A batch is a `Batch` (forecasters.py) with the truth (B, L, C, H, W) in physical units; the caller (evaluation:
windows of a split; verification: archived init times) decides which init times are scored and builds batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd
import torch
import xarray as xr

from data_catalog.schema import Scoring
from ..errors import InputError, UsageError
from ..store import physical_floor, properties, store_stats
from . import bootstrap
from .climatology import Climatology
from .forecasters import BASELINES, Batch, StoreFrames, reference_forecasters
from .metrics import CONVENTIONS, METRICS, Pooled, needed
from .regions import Regions, grid_regions
from .tally import Tally

SCORECARD_METRICS = ("rmse_weighted", "rmse", "mae_weighted", "mae", "acc", "masked_mae", "masked_rmse", "mse_paper",
                     "mae_paper")


def check_reference(given: str | None, forecasters) -> None:
    """Refuse a scorecard reference that will not be scored, before any work."""
    if given and given not in forecasters:
        raise UsageError("reference", f"{given!r} is not one of the forecasters scored here: {', '.join(forecasters)}")


def main_metric(names) -> str:
    """The metric reports lead with: area-weighted RMSE on lon/lat grids, else RMSE."""
    return "rmse_weighted" if "rmse_weighted" in names else "rmse"


class Room:
    """What scoring a store needs once: frames, climatology, regions, area weights, the metrics that apply and
    the reference forecasters."""

    def __init__(self, ds: xr.Dataset, lead_steps, device="cpu", scoring: Scoring | None = None):
        scoring = scoring or Scoring()
        self.ds, self.device = ds, torch.device(device)
        self.lead_steps = np.asarray(lead_steps, dtype=np.int64)
        self.step = pd.Timedelta(ds.attrs["time_step"])
        self.channels = [str(c) for c in ds["channel"].values]
        try:
            self.regions: Regions = grid_regions(ds, scoring.regions, scoring.standard_regions)
        except ValueError as e:  # the catalog entry's scoring settings do not fit this grid
            raise InputError(ds.encoding.get("source", ds.attrs.get("dataset", "store")),
                             f"the catalog's scoring settings: {e}") from None
        self.frames = StoreFrames(ds, self.lead_steps, self.device)
        self.climatology = Climatology(ds, self.device)
        props = properties(ds)
        image = bool(props.get("image_metrics"))
        stats = store_stats(ds)
        self.paper_range = (min(stats["min"]), max(stats["max"])) if image else None
        floor = physical_floor(ds)
        self.mask_threshold = scoring.mask_threshold if scoring.mask_threshold is not None else floor
        self.metrics = needed(self.regions.area_weighted, True, image, image and min(ds["data"].shape[2:]) >= 7,
                              self.mask_threshold is not None)
        self.references = reference_forecasters(self.frames, self.climatology, self.regions.weights)

    def valid_ns(self, init_ns) -> np.ndarray:
        return self.frames.valid_ns(init_ns)

    def available(self, forecasters, init_ns) -> np.ndarray:
        """(B, L): the pairs every forecaster has a forecast for."""
        valid = self.valid_ns(init_ns)
        ok = np.ones(valid.shape, bool)
        for f in forecasters:
            ok &= f.available(init_ns, valid)
        return ok

    def score(self, forecasters, batches: Iterable[tuple[Batch, torch.Tensor]], init_ns: np.ndarray,
              progress=None) -> "Scores":
        """Score every forecaster on every batch (rows index `init_ns`)."""
        names = [f.name for f in forecasters]
        if len(set(names)) < len(names):
            raise ValueError(f"forecaster names repeat: {names}")
        tally = Tally(len(init_ns), len(self.lead_steps), self.channels, self.regions, self.metrics,
                      self.paper_range, self.mask_threshold)
        use_clim = "acc" in self.metrics
        for batch, truth in batches:
            tally.mark(batch.rows, batch.scored)
            clim = self.climatology.at(batch.valid_ns) if use_clim else None
            for f in forecasters:
                tally.add(f.name, batch.rows, f(batch), truth, batch.scored, clim)
            if progress is not None:
                progress(len(batch.rows))
        return Scores(tally, np.asarray(init_ns, dtype=np.int64), names, self)


@dataclass
class Scores:
    tally: Tally
    init_ns: np.ndarray
    forecasters: list[str]
    room: Room

    # ---- values -------------------------------------------------------------------------------------

    @property
    def lead_hours(self) -> list[float]:
        return [round(k * self.room.step.total_seconds() / 3600, 6) for k in self.room.lead_steps]

    @property
    def active(self) -> np.ndarray:
        """Rows (init times) with at least one scored pair, in time order."""
        rows = np.flatnonzero(self.tally.scored.any(1))
        return rows[np.argsort(self.init_ns[rows], kind="stable")]

    def values(self, pooled: Pooled) -> dict[str, np.ndarray]:
        return {m: self.tally.value(m, pooled) for m in self.tally.metrics}

    def channel_names(self) -> list[str]:
        return self.tally.channels + (["all"] if self.tally.width > len(self.tally.channels) else [])

    def reference(self, given: str | None = None) -> str:
        """The scorecard's reference: `given`, else an external forecast, else the best baseline overall on the
        main metric."""
        if given:
            check_reference(given, self.forecasters)
            return given
        external = [f for f in self.forecasters if f != "model" and f not in BASELINES]
        if external:
            return external[0]
        metric = METRICS[main_metric(self.tally.metrics)]
        best = {f: float(metric.goodness(self.tally.value(metric.name, self.tally.pooled(f, over_leads=True))
                                         [-1, 0])) for f in self.forecasters if f in BASELINES}
        return max(best, key=best.get)

    def _resampled(self, name: str, member, counts, over_leads: bool) -> Pooled:
        rows = self.active
        sums = {k: member @ v[rows].reshape(rows.size, -1).astype("float64") for k, v in self.tally.sums[name].items()}
        pairs = member @ self.tally.scored[rows].astype("float64")
        sums = {k: (counts @ v).reshape(counts.shape[0], *self.tally.sums[name][k].shape[1:]) for k, v in sums.items()}
        pairs = counts @ pairs
        if over_leads:
            sums = {k: v.sum(1) for k, v in sums.items()}
            pairs = pairs.sum(1)
        t = self.tally
        return Pooled(sums, pairs, t.cells, t.wcells, t.channel_counts)

    # ---- outputs ------------------------------------------------------------------------------------

    def dataset(self, reference: str | None = None, resamples: int = bootstrap.RESAMPLES) -> xr.Dataset:
        """metric (forecaster, lead_time, channel, region) and `_overall` (forecaster, channel, region), each with
        `_lower`/`_upper` (95% block-bootstrap interval); `<metric>_skill` (% better than the reference, positive:
        better) with its interval and `<metric>_significant` (+1 better, -1 worse, 0 not significant)."""
        t, F = self.tally, self.forecasters
        ref = self.reference(reference)
        member, counts = bootstrap.block_counts(bootstrap.blocks(self.init_ns[self.active]), resamples)
        point = {f: (self.values(t.pooled(f)), self.values(t.pooled(f, over_leads=True))) for f in F}
        boot = {f: (self.values(self._resampled(f, member, counts, False)),
                    self.values(self._resampled(f, member, counts, True))) for f in F}
        data = {}
        dims = ("forecaster", "lead_time", "channel", "region")
        for m in t.metrics:
            meta = METRICS[m]
            attrs = {"long_name": meta.label, "better": meta.better,
                     "units": "data" if meta.in_units else "1"}
            for part, suffix, d in ((0, "", dims), (1, "_overall", (dims[0], *dims[2:]))):
                data[m + suffix] = (d, np.stack([point[f][part][m] for f in F]), attrs)
                lo, hi = zip(*(bootstrap.interval(boot[f][part][m]) for f in F))
                data[m + suffix + "_lower"] = (d, np.stack(lo), {"long_name": f"{meta.label}: 2.5th percentile"})
                data[m + suffix + "_upper"] = (d, np.stack(hi), {"long_name": f"{meta.label}: 97.5th percentile"})
                if m in SCORECARD_METRICS:
                    skill, lo, hi = self._skill(meta, [boot[f][part][m] for f in F], [point[f][part][m] for f in F],
                                                F.index(ref))
                    sig = np.where(lo > 0, 1, np.where(hi < 0, -1, 0)).astype("int8")
                    data[f"{m}{suffix}_skill"] = (d, skill, {"long_name": f"{meta.label}: % better than {ref}",
                                                             "units": "%"})
                    data[f"{m}{suffix}_skill_lower"] = (d, lo)
                    data[f"{m}{suffix}_skill_upper"] = (d, hi)
                    data[f"{m}{suffix}_significant"] = (d, sig, {"flag_values": np.array([-1, 0, 1], "int8"),
                                                                 "flag_meanings": "worse not_significant better"})
        for m in SCORECARD_METRICS:  # the model against each other forecaster: the reports' sentences
            if m not in t.metrics or "model" not in F:
                continue
            others = [f for f in F if f != "model"]
            for part, suffix in ((0, ""), (1, "_overall")):
                rows = [self._skill(METRICS[m], [boot["model"][part][m], boot[o][part][m]],
                                    [point["model"][part][m], point[o][part][m]], 1) for o in others]
                skill = np.stack([r[0][0] for r in rows])
                lo, hi = np.stack([r[1][0] for r in rows]), np.stack([r[2][0] for r in rows])
                d = ("versus", *(dims[1:] if part == 0 else dims[2:]))
                data[f"model_{m}{suffix}_skill"] = (d, skill, {"long_name": f"{METRICS[m].label}: % the model is "
                                                                            "better than each forecaster"})
                data[f"model_{m}{suffix}_significant"] = (d, np.where(lo > 0, 1, np.where(hi < 0, -1, 0)).astype("int8"))
        scored = t.scored
        data["samples"] = (("lead_time",), scored.sum(0).astype("int64"), {"long_name": "init times scored"})
        leads = pd.to_timedelta(self.lead_hours, unit="h")
        coords = {"forecaster": F, "lead_time": leads, "channel": self.channel_names(), "region": t.regions.names}
        if "model" in F and len(F) > 1:
            coords["versus"] = [f for f in F if f != "model"]
        ds = xr.Dataset(data, coords=coords)
        ds.attrs = {"reference": ref, "conventions": json.dumps(CONVENTIONS),
                    "climatology": self.room.climatology.description,
                    "intervals": f"{int(bootstrap.LEVEL * 100)}% block bootstrap over init times (blocks of "
                                 f"{bootstrap.BLOCK}, {resamples} resamples, seed {bootstrap.SEED})",
                    "skill": "100 * (reference - forecaster) / |reference| for lower-is-better metrics, "
                             "100 * (forecaster - reference) / |reference| for higher-is-better; positive: better",
                    "region_points": json.dumps(t.regions.describe()),
                    "mask_threshold": "" if self.room.mask_threshold is None else self.room.mask_threshold}
        return ds

    @staticmethod
    def _skill(meta, boot: list[np.ndarray], point: list[np.ndarray], ref: int):
        sign = 1.0 if meta.better == "higher" else -1.0

        def rel(v, r):
            with np.errstate(invalid="ignore", divide="ignore"):
                return sign * 100 * (v - r) / np.abs(r)

        skill = np.stack([rel(p, point[ref]) for p in point])
        lo, hi = zip(*(bootstrap.interval(rel(b, boot[ref])) for b in boot))
        return skill, np.stack(lo), np.stack(hi)

    def by_init(self, metric: str) -> dict[str, list[list[float | None]]]:
        """Per forecaster, the metric of each active init time at each lead (all channels, whole grid)."""
        out = {}
        for f in self.forecasters:
            v = self.tally.value(metric, self.tally.per_row(f))[self.active][..., -1, 0]
            ok = self.tally.scored[self.active]
            out[f] = [[float(x) if o and np.isfinite(x) else None for x, o in zip(row, okr)]
                      for row, okr in zip(v, ok)]
        return out


def results(ds: xr.Dataset) -> dict:
    """The scores dataset as JSON-ready dicts: {forecaster: {metric: overall, "by_lead": {...}, "by_channel":
    {...}, "by_region": {...}, "intervals": {...}, "skill": {...}}, "scorecard": {...}} (all channels and the whole
    grid unless said; None where a score is undefined)."""
    metrics = [m for m in METRICS if m in ds]
    channels, regions = list(ds["channel"].values), list(ds["region"].values)
    whole, every = dict(region=regions[0]), dict(channel=channels[-1])

    def num(v):
        v = float(v)
        return None if np.isnan(v) else v

    def series(da):
        return [num(v) for v in da.values]

    out: dict = {}
    samples = [int(v) for v in ds["samples"].values]
    for f in ds["forecaster"].values:
        sel = ds.sel(forecaster=f)
        r: dict = {m: num(sel[f"{m}_overall"].sel(**whole, **every)) for m in metrics}
        r["by_lead"] = {m: series(sel[m].sel(**whole, **every)) for m in metrics}
        r["by_channel"] = {str(c): {**{m: num(sel[f"{m}_overall"].sel(channel=c, **whole)) for m in metrics},
                                    "by_lead": {m: series(sel[m].sel(channel=c, **whole)) for m in metrics}}
                           for c in channels if c != "all"}
        r["by_region"] = {str(g): {**{m: num(sel[f"{m}_overall"].sel(region=g, **every)) for m in metrics
                                      if METRICS[m].regional},
                                   "by_lead": {m: series(sel[m].sel(region=g, **every)) for m in metrics
                                               if METRICS[m].regional}}
                          for g in regions}
        r["intervals"] = {m: {"overall": [num(sel[f"{m}_overall_lower"].sel(**whole, **every)),
                                          num(sel[f"{m}_overall_upper"].sel(**whole, **every))],
                              "by_lead": [[a, b] for a, b in zip(series(sel[f"{m}_lower"].sel(**whole, **every)),
                                                                 series(sel[f"{m}_upper"].sel(**whole, **every)))]}
                          for m in metrics}
        r["skill"] = {m: {"overall": num(sel[f"{m}_overall_skill"].sel(**whole, **every)),
                          "overall_interval": [num(sel[f"{m}_overall_skill_lower"].sel(**whole, **every)),
                                               num(sel[f"{m}_overall_skill_upper"].sel(**whole, **every))],
                          "overall_significant": int(sel[f"{m}_overall_significant"].sel(**whole, **every)),
                          "by_lead": series(sel[f"{m}_skill"].sel(**whole, **every)),
                          "significant": [int(v) for v in sel[f"{m}_significant"].sel(**whole, **every).values]}
                      for m in metrics if f"{m}_skill" in ds}
        if f == "model" and "versus" in ds.coords:
            r["versus"] = {str(o): {m: {"skill": series(ds[f"model_{m}_skill"].sel(versus=o, **whole, **every)),
                                        "significant": [int(v) for v in ds[f"model_{m}_significant"].sel(
                                            versus=o, **whole, **every).values],
                                        "overall": num(ds[f"model_{m}_overall_skill"].sel(versus=o, **whole, **every)),
                                        "overall_significant": int(ds[f"model_{m}_overall_significant"].sel(
                                            versus=o, **whole, **every))}
                                    for m in SCORECARD_METRICS if f"model_{m}_skill" in ds}
                           for o in ds["versus"].values}
        r["samples"] = max(samples) if samples else 0
        r["samples_by_lead"] = samples
        out[str(f)] = r
    out["scorecard"] = scorecard(ds)
    return out


def scorecard(ds: xr.Dataset) -> dict:
    """Relative skill against the reference by metric x channel x lead x region, with intervals and marks."""
    cards = {}
    for m in SCORECARD_METRICS:
        if f"{m}_skill" not in ds:
            continue
        cards[m] = {f: {"skill": np.round(ds[f"{m}_skill"].sel(forecaster=f).values, 4).tolist(),
                        "lower": np.round(ds[f"{m}_skill_lower"].sel(forecaster=f).values, 4).tolist(),
                        "upper": np.round(ds[f"{m}_skill_upper"].sel(forecaster=f).values, 4).tolist(),
                        "significant": ds[f"{m}_significant"].sel(forecaster=f).values.tolist()}
                    for f in ds["forecaster"].values if f != ds.attrs["reference"]}
    return {"reference": ds.attrs["reference"], "dims": ["lead_time", "channel", "region"],
            "channels": [str(c) for c in ds["channel"].values], "regions": [str(r) for r in ds["region"].values],
            "convention": ds.attrs["skill"], "intervals": ds.attrs["intervals"], "metrics": cards}
