"""The metrics table: the model next to the baselines, best marked; one for the terminal, HTML, Markdown and
Prefect artifacts."""

from __future__ import annotations

import numpy as np
import pandas as pd

TABLE_METRICS = ("rmse", "rmse_weighted", "mae", "mae_weighted", "bias", "acc", "mse_paper", "mae_paper", "ssim",
                 "psnr")
METRIC_NAMES = {"rmse": "RMSE", "rmse_weighted": "RMSE (lat-weighted)", "mae": "MAE",
                "mae_weighted": "MAE (lat-weighted)", "bias": "bias", "acc": "ACC", "mse_paper": "MSE (paper)",
                "mae_paper": "MAE (paper)", "ssim": "SSIM", "psnr": "PSNR"}
IN_UNITS = {"rmse", "rmse_weighted", "mae", "mae_weighted", "bias"}  # the others are unitless or on [0, 1] data
FORECASTER_ORDER = ("model", "persistence", "previous_day", "climatology")
_HIGHER_IS_BETTER = {"acc", "ssim", "psnr"}


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
    best = {m: _best({n: metrics[n].get(m) for n in names}, m) for m in cols}
    rows = []
    for n in names:
        row = [n.replace("_", " ")]
        for m in cols:
            row.append(_cell(metrics[n].get(m), n in best[m]))
        rows.append(row)
    return header, rows


def _best(values: dict, metric: str) -> set:
    """The names with the best value of `metric` (lowest magnitude; highest for ACC, SSIM, PSNR); none when all
    are equal or there is only one."""
    vals = {n: _number(v) for n, v in values.items()}
    vals = {n: v for n, v in vals.items() if v is not None and not np.isnan(v)}
    score = {n: (v if metric in _HIGHER_IS_BETTER else -abs(v)) for n, v in vals.items()}
    top = {n for n, v in score.items() if v == max(score.values(), default=None)}
    return top if len(vals) > 1 and len(top) < len(vals) else set()  # all equal: nothing to point out


def _cell(v, best: bool = False) -> str:
    v = _number(v)
    return "" if v is None else f"{v:.4g}" + ("*" if best else "")


def lead_table(metrics: dict, metric: str, lead_hours: list[float], samples: list[int] | None = None
               ) -> tuple[list[str], list[list[str]]]:
    """One metric by lead time: a row per lead, a column per forecaster (best in each row marked '*'), and the
    number of samples scored at each lead when given. Leads without a score stay empty."""
    from ..timefmt import format_lead

    names = [n for n in _forecasters(metrics) if metric in metrics[n].get("by_lead", {})]
    header = ["lead time"] + [n.replace("_", " ") for n in names] + (["samples"] if samples is not None else [])
    rows = []
    for i, h in enumerate(lead_hours):
        values = {n: metrics[n]["by_lead"][metric][i] for n in names}
        best = _best(values, metric)
        row = [format_lead(pd.Timedelta(hours=h))] + [_cell(values[n], n in best) for n in names]
        rows.append(row + ([str(samples[i])] if samples is not None else []))
    return header, rows


def _units(metrics: dict, names: list[str]) -> str:
    for u in [metrics.get("units")] + [metrics[n].get("units") for n in names]:
        if isinstance(u, str) and u:
            return u
        if isinstance(u, dict) and len(set(u.values())) == 1:
            return str(next(iter(u.values())))
    return ""


def behind_baselines(metrics: dict, metric: str) -> dict[str, list[int]]:
    """Lead indices (0-based) at which the model scores worse than each baseline on `metric` (lower is better;
    for ACC, SSIM and PSNR higher is better)."""
    higher_is_better = metric in _HIGHER_IS_BETTER
    model = metrics.get("model", {}).get("by_lead", {}).get(metric)
    if model is None:
        return {}
    out = {}
    for name, result in metrics.items():
        series = result.get("by_lead", {}).get(metric) if isinstance(result, dict) and name != "model" else None
        if series is not None:
            worse = [i for i, (m, b) in enumerate(zip(model, series)) if m is not None and b is not None
                     and (float(m) < float(b) if higher_is_better else float(m) > float(b))]
            out[name] = worse
    return out
