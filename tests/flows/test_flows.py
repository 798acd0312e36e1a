"""Every flow under one temporary Prefect server (prefect_test_harness) on tiny synthetic data: what it writes,
the artifacts it leaves, the cache that keeps an unchanged ingest from being redone, and bad input failing the
flow with the pipeline's one-line message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.forecast import taxibj_forecast, weatherbench_forecast
from flows.ingest import ingest_flow
from flows.report import map_report_flow
from flows.tasks import torchrun_command
from flows.train import taxibj_train, weatherbench_train
from pipelines.forecast.output import open_forecast
from pipelines.store import open_store

from .conftest import api_post


def run(flow, **params):
    """Run a flow; returns (final state, its task runs by name, its artifacts by key)."""
    state = flow(**params, return_state=True)
    api = PREFECT_API_URL.value()
    flow_run = str(state.state_details.flow_run_id)
    tasks = api_post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run]}}})
    artifacts = api_post(api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run]}}})
    return state, {t["name"]: t for t in tasks}, {a["key"]: a for a in artifacts}


def failure(state) -> str:
    assert state.is_failed(), state
    return state.message


def test_ingest_flow_is_cached_until_the_sources_change(tiny):
    state, tasks, artifacts = run(ingest_flow, dataset="tiny-wb")
    assert state.is_completed() and not state.result()["skipped"]
    store = tiny / "stores/tiny-wb.zarr"
    assert open_store(store).sizes["time"] == 168
    assert "168 of 1h" in artifacts["tiny-wb-store"]["data"] and str(store) in artifacts["tiny-wb-store"]["data"]

    state, tasks, _ = run(ingest_flow, dataset="tiny-wb")  # store current: the pipeline skips it, now cacheable
    assert state.result()["skipped"] and tasks["ingest tiny-wb"]["state"]["name"] == "Completed"
    state, tasks, _ = run(ingest_flow, dataset="tiny-wb")
    assert tasks["ingest tiny-wb"]["state"]["name"] == "Cached" and state.result()["store"] == str(store)

    source = next((tiny / "data/wb").rglob("*.nc"))  # a changed file: the cache no longer applies
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    state, tasks, _ = run(ingest_flow, dataset="tiny-wb")
    assert tasks["ingest tiny-wb"]["state"]["name"] == "Completed" and not state.result()["skipped"]

    state, tasks, _ = run(ingest_flow, dataset="tiny-wb", force=True)
    assert tasks["ingest tiny-wb"]["state"]["name"] == "Completed" and not state.result()["skipped"]


def test_bad_input_fails_the_flow_with_the_pipelines_one_line(tiny):
    state, tasks, _ = run(ingest_flow, dataset="tiny-wb", source="missing/*.nc")
    msg = failure(state)
    assert f"{tiny}/missing/*.nc: no files match this pattern" in msg and "\n" not in msg
    task = tasks["ingest tiny-wb"]
    assert task["state"]["name"] == "Failed" and "no files match" in task["state"]["message"]
    assert task["run_count"] == 1  # bad input is not retried

    msg = failure(run(ingest_flow, dataset="nope")[0])
    assert "no data set named 'nope'" in msg and "tiny-wb" in msg
    msg = failure(run(weatherbench_train, dataset="tiny-wb", epochs=0)[0])
    assert "BadInput: epochs: must be >= 1, got 0" in msg  # a bad parameter is named as the flow names it
    msg = failure(run(taxibj_forecast, dataset="tiny-bj", refresh_store=False, checkpoint="x.pt")[0])
    assert f"{tiny}/stores/tiny-bj.zarr: does not exist; run `simcast ingest` first" in msg
    msg = failure(run(weatherbench_forecast, dataset="tiny-wb")[0])
    assert f"{tiny}/runs: no trained checkpoint for 'tiny-wb'" in msg
    msg = failure(run(map_report_flow, forecast=str(tiny / "nothing.zarr"))[0])
    assert "nothing.zarr" in msg and "\n" not in msg
    msg = failure(run(map_report_flow, forecast=str(tiny / "nothing.zarr"), metrics="m.json")[0])
    assert "m.json: metrics file not found" in msg
    msg = failure(run(weatherbench_forecast, dataset="tiny-wb", map_leads=["banana"])[0])
    assert "BadInput: map_leads: 'banana' is not a lead time" in msg
    msg = failure(run(weatherbench_train, dataset="tiny-wb", train_options={"bogus": 1})[0])
    assert "BadInput: bogus: not an option of train (its options: " in msg


def test_ingest_flow_on_a_dask_cluster(tiny):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        state, _, _ = run(ingest_flow, dataset="tiny-bj", dask_address=cluster.scheduler_address)
    assert state.is_completed()
    assert open_store(tiny / "stores/tiny-bj.zarr")["data"].dims == ("time", "channel", "y", "x")


@pytest.mark.slow
def test_weatherbench_train_then_forecast_then_map_report(tiny):
    state, tasks, artifacts = run(weatherbench_train, dataset="tiny-wb", device="cpu", map_leads=["6"],
                                  train_options={"seed": 1})
    assert state.is_completed(), state.message
    out = state.result()
    run_dir = Path(out["run_dir"])
    assert run_dir.parent == tiny / "runs" and run_dir.name.startswith("tiny-wb-")
    for name in ("best.pt", "last.pt", "metrics.csv", "history.json", "eval-test/metrics.json", "hindcast.nc",
                 "report/report.html", "report/maps/t2m_lead06h.png"):
        assert (run_dir / name).exists(), name
    assert open_store(out["store"]).attrs["dataset"] == "tiny-wb"
    metrics = json.loads(Path(out["metrics"]).read_text())
    assert list(metrics) == ["model", "persistence", "previous_day", "climatology", "fitted", "scorecard"]
    assert set(tasks) == {"ingest tiny-wb", "train tiny-wb", "evaluate tiny-wb (test)", "forecast tiny-wb",
                          "maps and report", "publish-training"}
    assert json.loads((run_dir / "spec.json").read_text())["training"]["seed"] == 1

    md = artifacts["tiny-wb-training"]["data"]
    for text in ("| forecaster |", "| model |", "| persistence |", "| previous day |", "| climatology |",
                 (run_dir / "report/report.html").as_uri(), "t2m_lead06h", "best.pt"):
        assert text in md, text
    table = json.loads(artifacts["tiny-wb-metrics"]["data"])
    assert [r["forecaster"] for r in table] == ["model", "persistence", "previous day", "climatology", "fitted"]
    assert any(k.startswith("RMSE") and "[K]" in k for k in table[0])
    assert (run_dir / "report/report.html").as_uri() in artifacts["tiny-wb-report"]["data"]
    assert artifacts["tiny-wb-report"]["type"] == "markdown" or artifacts["tiny-wb-report"]["type"] == "link"

    # the scheduled forecast: newest checkpoint, latest data, maps with the checkpoint's scores
    state, _, artifacts = run(weatherbench_forecast, dataset="tiny-wb", device="cpu", map_leads=["6"])
    assert state.is_completed(), state.message
    fc = state.result()
    assert fc["checkpoint"] == str(run_dir / "best.pt")
    folder = tiny / "outputs/forecasts/tiny-wb/20100107T2300"
    assert fc["forecast"]["netcdf"] == str(folder / "forecast.nc")
    with open_forecast(folder / "forecast.nc") as ds:
        assert ds.sizes["lead_time"] == 6 and str(ds["init_time"].values[0]).startswith("2010-01-07T23:00")
    assert (folder / "report/maps/t2m_lead06h.png").is_file() and (folder / "report/metrics.json").is_file()
    assert "| model |" in artifacts["tiny-wb-forecast"]["data"] and "tiny-wb-forecast-netcdf" in artifacts

    # the map-report flow on that forecast, with a catalog entry's store as the truth
    state, _, artifacts = run(map_report_flow, forecast=fc["forecast"]["zarr"], truth="tiny-wb",
                              metrics=out["metrics"], projection="Robinson", leads=["3", "6"])
    assert state.is_completed(), state.message
    report = state.result()
    assert Path(report["dir"]) == folder / "forecast-report"
    assert sorted(Path(p).name for p in report["maps"]) == ["t2m_lead03h.png", "t2m_lead06h.png"]
    assert Path(report["html"]).as_uri() in artifacts["map-report-html"]["data"]


@pytest.mark.slow
def test_taxibj_train_and_forecast(tiny):
    state, _, artifacts = run(taxibj_train, dataset="tiny-bj", device="cpu", map_leads=["30min"])
    assert state.is_completed(), state.message
    run_dir = Path(state.result()["run_dir"])
    assert (run_dir / "report/maps/inflow_lead00h30m.png").is_file()
    table = json.loads(artifacts["tiny-bj-metrics"]["data"])
    assert table[0]["forecaster"] == "model" and any(k.startswith("SSIM") for k in table[0])

    state, _, _ = run(taxibj_forecast, dataset="tiny-bj", checkpoint=str(run_dir / "best.pt"), device="cpu",
                      lead_hours=3, map_leads=["3"])
    assert state.is_completed(), state.message
    with open_forecast(state.result()["forecast"]["zarr"]) as ds:
        assert ds.sizes["lead_time"] == 6  # 3 h of 30 min steps from a 4 -> 4 model: rollout


@pytest.mark.slow
def test_the_forecast_flow_archives_and_verifies(tiny):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.forecast.archive import open_archive

    for args in (["ingest", "tiny-wb"], ["train", "tiny-wb", "--device", "cpu", "--max-steps-per-epoch", "2",
                                         "--out", str(tiny / "runs/tiny-wb-20200101-000000")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output

    # the scheduled run: a forecast from the latest time, archived; its truth has not arrived, nothing to verify
    state, tasks, artifacts = run(weatherbench_forecast, dataset="tiny-wb", device="cpu", map_leads=["6"])
    assert state.is_completed(), state.message
    assert {"forecast tiny-wb", "verify tiny-wb", "publish-verification"} <= set(tasks)
    assert state.result()["verification"]["verified"] is False
    assert "Nothing to verify yet" in artifacts["tiny-wb-verification"]["data"]
    archive = tiny / "outputs/archive/tiny-wb.zarr"
    assert state.result()["archive"] == str(archive)

    # a hindcast a day earlier: archived beside it and verified, next to the baselines
    state, tasks, artifacts = run(weatherbench_forecast, dataset="tiny-wb", device="cpu", map_leads=["6"],
                                  refresh_store=False, init_times=["2010-01-07T00:00/2010-01-07T12:00/6h"])
    assert state.is_completed(), state.message
    with open_archive(archive, "tiny-wb") as ds:
        assert [str(t)[11:16] for t in ds["init_time"].values] == ["00:00", "06:00", "12:00", "23:00"]
    verification = state.result()["verification"]
    assert verification["verified"] and verification["result"]["counts"]["verified_init_times"] == 3
    assert verification["result"]["counts"]["awaiting_truth"] == 6
    page = tiny / "outputs/verification/tiny-wb/verification.html"
    assert verification["paths"]["html"] == str(page) and page.is_file()
    md = artifacts["tiny-wb-verification"]["data"]
    for text in ("| model |", "| persistence |", "| previous day |", "| climatology |", page.as_uri(), "by lead time"):
        assert text in md, text
    table = json.loads(artifacts["tiny-wb-verification-table"]["data"])
    assert len(table) == 6 and table[0]["lead time"] == "+1 h" and table[0]["samples"] == "3"
    assert page.as_uri() in artifacts["tiny-wb-verification-page"]["data"]
    report = (tiny / "outputs/forecasts/tiny-wb/20100107T0000/report/report.html").read_text()
    assert "../../../../verification/tiny-wb/verification.html" in report and "3 of 4 archived forecasts" in report


def test_torchrun_runs_the_spec_file_on_every_rank():
    cmd = torchrun_command(Path("/runs/r/spec.json"), "era5-uk-t2m", 4)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert cmd[6:] == ["pipelines.cli", "train", "era5-uk-t2m", "--spec", "/runs/r/spec.json"]


@pytest.mark.slow
def test_training_under_torchrun_on_two_processes(tiny):
    """nproc_per_node=2: torchrun starts `simcast train` on two CPU processes (gloo), DDP from simvp."""
    state, tasks, artifacts = run(weatherbench_train, dataset="tiny-wb", device="cpu", nproc_per_node=2,
                                  train_options={"batch_size": 4, "max_steps_per_epoch": 2}, map_leads=["6"])
    assert state.is_completed(), state.message
    run_dir = Path(state.result()["run_dir"])
    assert (run_dir / "best.pt").is_file() and (run_dir / "report/report.html").is_file()
    assert "2 processes (torchrun)" in artifacts["tiny-wb-training"]["data"]
