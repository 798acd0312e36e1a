"""simcast pipeline stages as plain functions: ingest, windows, evaluation, forecasts, maps, reports."""

import os
from importlib.metadata import PackageNotFoundError, version

# Before torch loads (its OpenMP runtime reads this once): threads that spin 300000 rounds after each parallel
# region (libgomp's default) make training 1.9x slower (single ops up to 100x) as soon as another process shares
# the cores; 10000 rounds keep the idle speed (BENCHMARKS.md, CPU threads). OMP_WAIT_POLICY or GOMP_SPINCOUNT
# set in the environment take precedence.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

try:
    __version__ = version("simcast")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
