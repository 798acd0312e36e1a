"""The verification page: tables (report/tables.py) and the plot of skill over init time per lead, as HTML and
Markdown (report/html.py). Figures are drawn on matplotlib's Agg canvas without pyplot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from ..report.figures import save_png
from ..report.html import page_html, page_markdown
from ..report.scorecard import scorecard_plot
from ..report.style import label, style
from ..report.tables import IN_UNITS, METRIC_NAMES, better, forecasters, lead_table, metrics_table
from ..timefmt import format_lead, format_time

MAX_PANELS = 4        # leads plotted over init time
MAX_INIT_ROWS = 24    # newest init times in the by-init table
MAX_LEAD_COLUMNS = 12
def _units(result: dict) -> str:
    units = set(result.get("units", {}).values())
    return units.pop() if len(units) == 1 else ""


def spread(indices, most: int) -> list[int]:
    """At most `most` of the indices, evenly spread, first and last included."""
    indices = list(indices)
    if len(indices) <= most:
        return indices
    return [indices[i] for i in np.unique(np.linspace(0, len(indices) - 1, most).round().astype(int))]


def skill_plot(result: dict, path: Path, metric: str) -> Path | None:
    """One panel per lead (at most four, spread over the scored leads): the metric of each verified init time,
    model and baselines."""
    samples = result["metrics"]["model"]["samples_by_lead"]
    leads = spread([i for i, n in enumerate(samples) if n], MAX_PANELS)
    if not leads:
        return None
    inits = pd.DatetimeIndex(result["by_init"]["init_times"])
    units = _units(result) if metric in IN_UNITS else ""
    fig = Figure(figsize=(7.5, 1.2 + 1.9 * len(leads)), dpi=110, layout="constrained")
    axes = fig.subplots(len(leads), 1, sharex=True, squeeze=False)[:, 0]
    for ax, lead in zip(axes, leads):
        for name in forecasters(result["metrics"]):
            values = np.array([np.nan if row[lead] is None else row[lead]
                               for row in result["by_init"].get(name, {}).get(metric, [])], dtype="float64")
            if values.size == 0:
                continue
            ok = np.isfinite(values)
            line = {**style(name), "markersize": 3}
            line["linewidth"] = 2.0 if name == "model" else 1.2
            ax.plot(inits[ok], values[ok], label=label(name), **line)
        ax.set_title(f"lead {format_lead(pd.Timedelta(hours=result['lead_hours'][lead]))}", fontsize=9, loc="left")
        ax.set_ylabel(METRIC_NAMES.get(metric, metric) + (f" [{units}]" if units else ""), fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    locator = AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes[-1].set_xlabel("init time", fontsize=8)
    axes[0].legend(fontsize=8, ncols=4, loc="lower left", bbox_to_anchor=(0, 1.12), frameon=False)
    fig.suptitle(f"{METRIC_NAMES.get(metric, metric)} over init time: {result['dataset']}", fontsize=10)
    return save_png(fig, path)


def init_table(result: dict, metric: str) -> tuple[list[str], list[list[str]]]:
    """The newest verified init times (rows) by lead (columns): the model's metric, marked '*' where it beats
    every baseline at that init time and lead."""
    by_init = result["by_init"]
    model = by_init["model"][metric]
    baselines = [by_init[n][metric] for n in forecasters(result["metrics"]) if n != "model" and n in by_init]
    leads = spread(range(len(result["lead_hours"])), MAX_LEAD_COLUMNS)
    header = ["init time"] + [format_lead(pd.Timedelta(hours=result["lead_hours"][k])) for k in leads]
    rows = []
    for r in list(range(len(by_init["init_times"])))[::-1][:MAX_INIT_ROWS]:
        row = [format_time(by_init["init_times"][r])]
        for k in leads:
            v = model[r][k]
            if v is None:
                row.append("")
                continue
            others = [b[r][k] for b in baselines if b[r][k] is not None]
            wins = bool(others) and all(better(metric, v, o) for o in others)
            row.append(f"{v:.4g}" + ("*" if wins else ""))
        rows.append(row)
    return header, rows


def page_blocks(result: dict, plot: str | None, scorecard: str | None = None) -> list[tuple]:
    c, metric = result["counts"], result["main_metric"]
    name = METRIC_NAMES.get(metric, metric)
    units = _units(result)
    facts = [
        ("data set", result["dataset"]),
        ("archive", result["archive"]),
        ("truth store", result["store"]),
        ("archived forecasts", f"{c['init_times']} init times"),
        ("verified", f"{c['verified_init_times']} init times ({result['first_init_time'][:16]} .. "
                     f"{result['last_init_time'][:16]}), {c['complete_init_times']} of them at every lead"
                     + (f", {c['partly_verified_init_times']} so far at the leads whose truth is in"
                        if c["partly_verified_init_times"] else "")),
        ("lead times scored", f"{c['scored']} of {c['forecast']} archived"),
        ("awaiting truth", f"{c['awaiting_truth']} lead times (valid after the store's last time)"),
        ("skipped", f"{c['missing_in_store']} lead times on missing store times, {c['no_reference_frames']} "
                    "without a frame the reference forecasts need"),
        ("written", f"{result['created']} (simcast {result['simcast_version']})"),
    ]
    samples = result["metrics"]["model"]["samples_by_lead"]
    blocks: list[tuple] = [("p", result["policy"]), ("h2", "What was verified"), ("kv", facts),
                           ("h2", "Scores over all verified forecasts"),
                           ("table", *metrics_table(result["metrics"], units),
                            "Bold: best in its column. Every scored (init time, lead time) pair pooled; physical "
                            "units.")]
    blocks += [("h2", f"{name} by lead time" + (f" [{units}]" if units and metric in IN_UNITS else "")),
               ("table", *lead_table(result["metrics"], metric, result["lead_hours"], samples),
                "Bold: best at that lead. samples: init times scored at that lead.")]
    from ..report.tables import skill_summary

    sentences = skill_summary(result["metrics"], metric, result["lead_hours"])
    if sentences:
        blocks.append(("ul", sentences))
    if scorecard:
        blocks.append(("figure", scorecard, f"Scorecard: {name}, % better than "
                                            f"{label(result.get('reference', ''))} by lead time (dot: significant at "
                                            "95%, block bootstrap over init times)."))
    if plot:
        blocks.append(("figure", plot, f"{name} of each verified init time at a few leads, model and reference "
                                       "forecasts."))
    header, rows = init_table(result, metric)
    blocks += [("h2", f"The model's {name} by init time (newest {min(len(rows), MAX_INIT_ROWS)})"),
               ("table", header, rows, "Bold: the model beats every baseline at that init time and lead. Empty: "
                                       "not scored (truth not in the store yet, or a missing time).")]
    return blocks


def render_page(result: dict, folder: Path) -> tuple[str, str, dict[str, str | None]]:
    """(HTML, Markdown, {"plot": skill plot file, "scorecard_plot": scorecard file}); the figures are written
    into folder."""
    metric = result["main_metric"]
    plot_path = skill_plot(result, folder / f"skill_{metric}.png", metric)
    card = scorecard_plot(result["metrics"], folder / "scorecard.png", result["lead_hours"], metric)
    plots = {"plot": plot_path.name if plot_path else None, "scorecard_plot": card.name if card else None}
    title = f"simcast verification: {result['dataset']}"
    blocks = page_blocks(result, plots["plot"], plots["scorecard_plot"])
    return page_html(title, blocks), page_markdown(title, blocks), plots
