"""Flow tests: one temporary Prefect server (prefect_test_harness) for the whole session, and tiny synthetic
WeatherBench and TaxiBJ catalog entries that ingest and train in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ..conftest import TINY_BJ, TINY_WB



def api_post(api_url: str, path: str, body: dict) -> list[dict]:
    """A Prefect API filter query (task runs, flow runs, artifacts) as plain JSON."""
    import httpx

    r = httpx.post(api_url.rstrip("/") + path, json={"limit": 200, "offset": 0, **body}, timeout=30)
    r.raise_for_status()
    return r.json()


def write_tiny_data(root: Path) -> Path:
    """Synthetic files under root/data (a week of hourly 9 x 13 t2m over the UK; ten days of 8 x 8 half-hourly
    flows) and root/catalog.yaml with the entries tiny-wb and tiny-bj; returns the catalog path."""
    from pipelines import synth

    synth.write_weatherbench(root / "data/wb", "2010-01-01", "2010-01-07", resolution=1.0,
                             region=((50.0, 58.0), (-10.0, 2.0)))
    synth.write_taxibj(root / "data/bj", {"BJ13": ("2013-07-01", "2013-07-10")}, grid=(8, 8))
    catalog = root / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"datasets": {"tiny-wb": TINY_WB, "tiny-bj": TINY_BJ}}, sort_keys=False))
    return catalog


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """A temporary Prefect server and database for every flow test of the session, with its own PREFECT_HOME
    (result storage for cached tasks included); independent of the tests' working directories."""
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    with temporary_settings({PREFECT_HOME: str(home), PREFECT_LOCAL_STORAGE_PATH: str(home / "storage"),
                             PREFECT_SERVER_ANALYTICS_ENABLED: False}):
        with prefect_test_harness(server_startup_timeout=180):
            yield home


@pytest.fixture
def tiny(isolated, monkeypatch, prefect_harness) -> Path:
    """The test's folder with tiny synthetic data and SIMCAST_CATALOG pointing at its catalog; runs and
    outputs go under it too."""
    monkeypatch.setenv("SIMCAST_CATALOG", str(write_tiny_data(isolated)))
    monkeypatch.setenv("SIMCAST_RUNS_ROOT", str(isolated / "runs"))
    monkeypatch.setenv("SIMCAST_OUTPUT_ROOT", str(isolated / "outputs"))
    return isolated
