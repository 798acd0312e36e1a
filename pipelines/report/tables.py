"""The metrics tables: the model next to the reference forecasts, best marked; one for the terminal, HTML,
Markdown and Prefect artifacts. Which metrics there are, their labels, units and which way is better come from
their declarations (pipelines/scoring/metrics.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..scoring import BASELINES, METRICS
from ..timefmt import format_lead

TABLE_METRICS = tuple(METRICS)
METRIC_NAMES = {name: m.label for name, m in METRICS.items()}
IN_UNITS = {name for name, m in METRICS.items() if m.in_units}
FORECASTER_ORDER = ("model", *BASELINES)
NOT_FORECASTERS = {"scorecard", "units", "lead_hours"}


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


def forecasters(metrics: dict) -> list[str]:
    names = [k for k, v in metrics.items() if k not in NOT_FORECASTERS and isinstance(v, dict) and (
        any(_number(v.get(m)) is not None for m in TABLE_METRICS) or isinstance(v.get("by_lead"), dict))]
    return sorted(names, key=lambda n: (FORECASTER_ORDER.index(n) if n in FORECASTER_ORDER else 99, n))


def units_of(metrics: dict, names: list[str] | None = None) -> str:
    names = forecasters(metrics) if names is None else names
    for u in [metrics.get("units")] + [metrics[n].get("units") for n in names]:
        if isinstance(u, str) and u:
            return u
        if isinstance(u, dict) and len(set(u.values())) == 1:
            return str(next(iter(u.values())))
    return ""


def metrics_table(metrics: dict, units: str = "", interval: str | None = None, columns=TABLE_METRICS
                  ) -> tuple[list[str], list[list[str]]]:
    """Header and rows (model next to the reference forecasts) of the overall metrics present (of `columns`); the
    best value(s) in each column are marked with a trailing '*'. `interval`: a metric whose 95% interval gets a
    column (default: the first of rmse_weighted, rmse present with intervals)."""
    names = forecasters(metrics)
    cols = [m for m in columns if any(_number(metrics[n].get(m)) is not None for n in names)]
    units = units or units_of(metrics, names)
    if interval is None:
        interval = next((m for m in ("rmse_weighted", "rmse") if m in cols
                         and any("intervals" in metrics[n] for n in names)), None)
    header = ["forecaster"] + [METRIC_NAMES[m] + (f" [{units}]" if units and m in IN_UNITS else "") for m in cols]
    if interval:
        header.insert(2 + cols.index(interval), f"{METRIC_NAMES[interval]} 95% interval")
    best = {m: best_of({n: metrics[n].get(m) for n in names}, m) for m in cols}
    rows = []
    for n in names:
        row = [n.replace("_", " ")] + [cell(metrics[n].get(m), n in best[m]) for m in cols]
        if interval:
            lo, hi = (metrics[n].get("intervals", {}).get(interval, {}).get("overall") or [None, None])
            row.insert(2 + cols.index(interval), f"{cell(lo)} .. {cell(hi)}" if lo is not None else "")
        rows.append(row)
    return header, rows


def best_of(values: dict, metric: str) -> set:
    """The names with the best value of `metric` (its declaration says which way is better); none when all are
    equal or there is only one."""
    vals = {n: _number(v) for n, v in values.items()}
    vals = {n: v for n, v in vals.items() if v is not None and not np.isnan(v)}
    decl = METRICS.get(metric)
    score = {n: float(decl.goodness(v)) if decl else -abs(v) for n, v in vals.items()}
    top = {n for n, v in score.items() if v == max(score.values(), default=None)}
    return top if len(vals) > 1 and len(top) < len(vals) else set()  # all equal: nothing to point out


def better(metric: str, a: float, b: float) -> bool:
    """a is better than b on metric."""
    decl = METRICS.get(metric)
    return bool(decl.goodness(a) > decl.goodness(b)) if decl else abs(a) < abs(b)


def cell(v, best: bool = False) -> str:
    v = _number(v)
    return "" if v is None else f"{v:.4g}" + ("*" if best else "")


def lead_table(metrics: dict, metric: str, lead_hours: list[float], samples: list[int] | None = None
               ) -> tuple[list[str], list[list[str]]]:
    """One metric by lead time: a row per lead, a column per forecaster (best in each row marked '*'), and the
    number of samples scored at each lead when given. Leads without a score stay empty."""
    from ..timefmt import format_lead

    names = [n for n in forecasters(metrics) if metric in metrics[n].get("by_lead", {})]
    header = ["lead time"] + [n.replace("_", " ") for n in names] + (["samples"] if samples is not None else [])
    rows = []
    for i, h in enumerate(lead_hours):
        values = {n: metrics[n]["by_lead"][metric][i] for n in names}
        best = best_of(values, metric)
        row = [format_lead(pd.Timedelta(hours=h))] + [cell(values[n], n in best) for n in names]
        rows.append(row + ([str(samples[i])] if samples is not None else []))
    return header, rows


def behind(metrics: dict, metric: str) -> dict[str, dict[str, list[int]]]:
    """Per other forecaster, the lead indices (0-based) at which the model scores worse on `metric`
    ("worse"), and those of them where the difference is significant ("significant": its 95% interval excludes
    zero; empty when the metrics carry no intervals)."""
    model = metrics.get("model", {})
    series = model.get("by_lead", {}).get(metric)
    if series is None:
        return {}
    out = {}
    for name in forecasters(metrics):
        theirs = metrics[name].get("by_lead", {}).get(metric) if name != "model" else None
        if theirs is None:
            continue
        worse = [i for i, (m, b) in enumerate(zip(series, theirs))
                 if _number(m) is not None and _number(b) is not None and better(metric, _number(b), _number(m))]
        sig = model.get("versus", {}).get(name, {}).get(metric, {}).get("significant")
        out[name] = {"worse": worse, "significant": [i for i in worse if sig and sig[i] == -1],
                     "significantly_better": [i for i, s in enumerate(sig or []) if s == 1]}
    return out


def _lead_ranges(hours: list[float], step: float) -> str:
    """[1, 2, 3, 7] (step 1) -> '+1 h to +3 h, +7 h': leads one step apart joined."""
    def text(h):
        return format_lead(pd.Timedelta(hours=h))
    runs = [[hours[0]]] if hours else []
    for h in hours[1:]:
        if abs(h - runs[-1][-1] - step) < 1e-9:
            runs[-1].append(h)
        else:
            runs.append([h])
    return ", ".join(text(r[0]) if len(r) == 1 else f"{text(r[0])} to {text(r[-1])}" for r in runs)


def skill_summary(metrics: dict, metric: str, lead_hours: list[float]) -> list[str]:
    """Plain sentences: at which leads the model is behind each other forecaster on `metric`, and at which of
    them the difference is significant (its 95% block-bootstrap interval excludes zero); "better" is claimed only
    where the interval supports it."""
    name = METRIC_NAMES.get(metric, metric)
    step = lead_hours[1] - lead_hours[0] if len(lead_hours) > 1 else 1.0
    has_intervals = "versus" in metrics.get("model", {})

    def leads(idx):
        return "every lead" if len(idx) == len(lead_hours) else _lead_ranges([lead_hours[i] for i in idx], step)

    out = []
    for other, r in behind(metrics, metric).items():
        who = {"previous_day": "the previous day", "fitted": "the fitted linear forecast"}.get(
            other, other.replace("_", " "))
        if not r["worse"]:
            text = f"The model is not behind {who} at any lead ({name})"
        else:
            text = f"The model is behind {who} at {leads(r['worse'])} ({name})"
        if has_intervals:
            sig_worse, sig_better = r["significant"], r["significantly_better"]
            parts = []
            if sig_better:
                parts.append(f"significantly better at {leads(sig_better)}")
            if sig_worse:
                parts.append(f"significantly worse at {leads(sig_worse)}")
            text += "; " + (" and ".join(parts) if parts else "no difference is significant") + \
                " (95% block-bootstrap interval)"
        out.append(text + ".")
    return out
