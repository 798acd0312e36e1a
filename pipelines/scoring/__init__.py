"""The scoring room: every forecaster (the model, the reference forecasts, external and archived forecasts) scored
by (init time, lead time) through one loop, one tally and one scores dataset, with regions, per-channel scores,
block-bootstrap intervals and a scorecard against a reference.

- metrics.py: every metric declared once (label, units, better direction, conventions) and its value from sums
- tally.py: running sums per (init time, lead, channel, region), computed on the batch's device
- regions.py: WeatherBench2's area weights, its standard regions, the catalog's own regions
- climatology.py: the training split's climatology (day of year x hour where a year is covered)
- forecasters.py: persistence, previous day, climatology, the fitted linear forecast, model, external, archived
- bootstrap.py: block bootstrap over init times
- engine.py: the room (`Room`), the loop (`Room.score`) and its outputs (`Scores.dataset`, `results`)

`evaluate` (windows of a split) and `verify` (archived init times) only choose the init times and build batches.
"""

from .engine import Room, Scores, check_reference, main_metric, results, scorecard
from .forecasters import (BASELINES, LABELS, ArchivedForecast, Batch, ExternalForecast, ModelForecast,
                          days_back, index_of)
from .metrics import CONVENTIONS, METRICS
from .tally import Forecast

__all__ = ["Room", "Scores", "check_reference", "main_metric", "results", "scorecard", "BASELINES", "LABELS", "ArchivedForecast",
           "Batch", "ExternalForecast", "ModelForecast", "days_back", "index_of", "CONVENTIONS", "METRICS",
           "Forecast", "json_safe"]


def json_safe(obj):
    """Scores as JSON allows them: undefined ones (NaN) become null, infinities the strings "inf"/"-inf"."""
    import math

    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj
