"""simcast pipeline stages as plain functions: ingest, windows, evaluation, forecasts, maps, reports."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("simcast")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
