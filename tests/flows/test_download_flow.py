"""The ingest flow's download step: a fresh data root is filled from a local HTTP server (WeatherBench's archive
layout), then ingested; a rerun downloads nothing; a bad download fails the flow with the pipeline's one line."""

from __future__ import annotations

import pytest

from flows.ingest import ingest_flow
from pipelines import download as dl
from pipelines.store import open_store

from ..conftest import write_catalog
from ..download_server import T2M_FOLDER, T2M_PATH, FileServer, weatherbench_entry, weatherbench_zip
from .test_flows import failure, run


@pytest.fixture
def served(isolated, prefect_harness, monkeypatch, tmp_path_factory):
    archive, members = weatherbench_zip(tmp_path_factory.mktemp("weatherbench"))
    server = FileServer(files={T2M_PATH: archive}).start()
    monkeypatch.setattr(dl, "RETRY_DELAY", 0.0)
    catalog = write_catalog(isolated / "catalog.yaml", {"wb-t2m": weatherbench_entry(server.url())})
    monkeypatch.setenv("SIMCAST_CATALOG", str(catalog))
    yield server, members
    server.stop()


def test_the_ingest_flow_downloads_missing_files_first(served, isolated):
    server, members = served
    state, tasks, _ = run(ingest_flow, dataset="wb-t2m", download=True)
    assert state.is_completed(), state.message
    assert tasks["download wb-t2m"]["state"]["name"] == "Completed"
    assert tasks["ingest wb-t2m"]["state"]["name"] == "Completed"
    for name, body in members.items():
        assert (isolated / "data" / T2M_FOLDER / name).read_bytes() == body
    assert open_store(isolated / "stores/wb-t2m.zarr").sizes["time"] == 168

    server.requests.clear()  # everything there and verified: the step is a no-op, without a request
    state, tasks, _ = run(ingest_flow, dataset="wb-t2m", download=True)
    assert state.is_completed() and server.requests == []
    assert tasks["download wb-t2m"]["state"]["name"] == "Completed"


def test_a_failed_download_fails_the_flow_in_one_line(served, isolated):
    server, _ = served
    server.status[T2M_PATH] = 404
    state, tasks, _ = run(ingest_flow, dataset="wb-t2m", download=True)
    msg = failure(state)
    assert f"{server.url()}: HTTP 404 Not Found" in msg and "\n" not in msg
    assert tasks["download wb-t2m"]["run_count"] == 1 and "ingest wb-t2m" not in tasks  # bad input: not retried
    assert not (isolated / "data" / "weatherbench").exists()
