"""The operational loop, for real: the bundled samples arrive one day at a time and the forecast flow runs after
each arrival (a real Prefect run): the store grows by a day through an append, never a rebuild; a forecast from
the newest time is archived; the verification gains the forecasts whose truth has arrived."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

from flows import replay
from flows.forecast import taxibj_forecast, weatherbench_forecast
from pipelines import ingest, train
from pipelines.specs import IngestSpec, TrainSpec

pytestmark = pytest.mark.slow

CASES = {  # kind: (flow, steps per day, a lead to map)
    "weather": (weatherbench_forecast, 24, "6"),
    "traffic": (taxibj_forecast, 48, "1"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_days_arrive_and_the_forecast_flow_appends_archives_and_verifies(kind, isolated, monkeypatch,
                                                                        prefect_harness):
    flow, per_day, lead = CASES[kind]
    sample, incoming, env = replay.prepare(kind, isolated / "work")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    store = Path(env["SIMCAST_STORE_ROOT"]) / f"{sample.live}.zarr"
    ingest.run(IngestSpec.from_catalog(sample.live), progress=False)
    train.run(TrainSpec.from_catalog(sample.live, epochs=1, max_steps_per_epoch=2, device="cpu"), progress=False)
    before = replay.store_state(store)
    assert before["appends"] == 0

    for day, path in enumerate(incoming[:3], start=1):
        replay.arrive(sample, path, isolated / "work")
        state = flow(dataset=sample.live, device="cpu", map_leads=[lead], return_state=True)
        assert state.is_completed(), state.message
        result = state.result()
        now = replay.store_state(store)
        assert now["time_steps"] == before["time_steps"] + day * per_day
        assert now["appends"] == day  # appended each day: nothing re-ingested from scratch
        with xr.open_zarr(result["archive"], consolidated=True) as archive:
            assert archive.sizes["init_time"] == day  # every day's forecast kept
            assert archive["init_time"].values[-1] == now["last_time"].to_datetime64()
        # a forecast is verified once its truth has arrived: the next day's
        assert replay.verified_init_times(result["verification"]) == day - 1
        assert Path(result["report"]).is_file()
