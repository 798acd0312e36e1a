"""The scorecard figure: each forecaster's skill against the reference (% better, blue; % worse, red) by lead time
and region, a dot where the difference is significant (its 95% block-bootstrap interval excludes zero). Drawn on
matplotlib's Agg canvas without pyplot; written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from ..timefmt import format_lead
from .figures import save_png
from .style import label
from .tables import METRIC_NAMES

MAX_ROWS = 60


def scorecard_plot(metrics: dict, path: str | Path, lead_hours: list[float], metric: str | None = None,
                   title: str = "") -> Path | None:
    """One panel: rows = forecaster x region (all channels), columns = leads. None when the metrics carry no
    scorecard for any metric."""
    card = metrics.get("scorecard") or {}
    cards = card.get("metrics") or {}
    if not cards:
        return None
    metric = metric if metric in cards else next(iter(cards))
    regions = card["regions"]
    rows, names, marks = [], [], []
    for f, c in cards[metric].items():
        skill, sig = np.asarray(c["skill"], dtype="float64"), np.asarray(c["significant"])
        for g, region in enumerate(regions):  # (lead, channel, region): all channels is the last
            rows.append(skill[:, -1, g])
            marks.append(sig[:, -1, g])
            names.append(label(f) + ("" if len(regions) == 1 else f" / {region}"))
    if not rows:
        return None
    rows, marks, names = rows[:MAX_ROWS], marks[:MAX_ROWS], names[:MAX_ROWS]
    values = np.array(rows)
    finite = np.abs(values[np.isfinite(values)])
    span = max(float(np.percentile(finite, 95)) if finite.size else 1.0, 1.0)
    leads = len(lead_hours)
    fig = Figure(figsize=(min(2.5 + 0.42 * leads, 16), 1.4 + 0.32 * len(rows)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.clip(np.nan_to_num(values, nan=0.0), -span, span), cmap="RdBu", aspect="auto",
                      norm=TwoSlopeNorm(0.0, -span, span))
    for i, row in enumerate(marks):
        for j, s in enumerate(row[:leads]):
            if s:
                ax.plot(j, i, marker="o", ms=3.5, color="black" if s > 0 else "white", mec="black", mew=0.6)
            if not np.isfinite(values[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=6)
    step = max(1, leads // 12)
    ax.set_xticks(range(0, leads, step), [format_lead(pd.Timedelta(hours=h)) for h in lead_hours[::step]],
                  rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("lead time", fontsize=8)
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label(f"% better than {label(card['reference'])}", fontsize=8)
    ax.set_title(title or f"Scorecard: {METRIC_NAMES.get(metric, metric)} against {label(card['reference'])} "
                          "(dot: significant, 95%)", fontsize=9)
    return save_png(fig, path)
