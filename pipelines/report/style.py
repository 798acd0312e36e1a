"""How forecasters look on every page and plot: one colour, line and marker each (the model always red)."""

from __future__ import annotations

from ..scoring import LABELS

STYLES = {
    "model": {"color": "tab:red", "linestyle": "-", "marker": "o", "linewidth": 2.2, "zorder": 5},
    "persistence": {"color": "tab:blue", "linestyle": "--", "marker": "s"},
    "previous_day": {"color": "tab:green", "linestyle": "-.", "marker": "d"},
    "climatology": {"color": "0.45", "linestyle": ":", "marker": "^"},
    "fitted": {"color": "tab:purple", "linestyle": (0, (5, 1)), "marker": "v"},
}
OTHER = {"color": "tab:brown", "linestyle": "-", "marker": "x"}  # external forecasts


def style(name: str) -> dict:
    return dict(STYLES.get(name, OTHER))


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))
