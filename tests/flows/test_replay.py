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


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("args, code, says", [
    (["--epochs", "0"], 2, "argument --epochs: must be >= 1, got 0"),
    (["--epochs", "-1"], 2, "argument --epochs: must be >= 1, got -1"),
    (["--days", "-1"], 2, "argument --days: must be >= 1, got -1"),
    (["--days", "many"], 2, "argument --days: 'many' is not a whole number"),
    (["--device", "banana"], 2, "--device: 'banana' is not a device"),
    (["--work", "{w}/mine"], 1, "{w}/mine: exists and is a folder, not a simcast replay"),
    (["--work", "{w}/mine/catalog.yaml"], 1, "{w}/mine/catalog.yaml: exists and is a file, not a simcast replay"),
    (["--work", "{w}/mine/catalog.yaml/sub"], 1, "catalog.yaml/sub: cannot write here: a part of the path is a file"),
])
def test_bad_options_end_in_one_line_and_write_nothing(isolated, capsys, args, code, says):
    mine = isolated / "mine"
    mine.mkdir()
    (mine / "catalog.yaml").write_text("datasets: {}  # my own catalog\n")
    before = _tree(isolated)
    argv = ["weather", "--work", str(isolated / "work"), *[a.format(w=isolated) for a in args]]
    with pytest.raises(SystemExit) as e:
        replay.main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == code and len(err) == 1 and err[0].startswith("error: "), err
    assert says.format(w=isolated) in err[0], err[0]
    assert _tree(isolated) == before  # nothing written, the user's catalog untouched


def test_cuda_without_a_gpu_is_refused_in_one_line(isolated, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as e:
        replay.main(["traffic", "--work", str(isolated / "work"), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--device: 'cuda' asked for, but CUDA is not available" in err[0]
    assert not (isolated / "work").exists()


def test_the_work_folder_is_claimed_once_and_reused(isolated):
    work = isolated / "empty"
    work.mkdir()
    args = replay.parse_args(["weather", "--work", str(work)])
    replay.check(args)
    replay.own_work_folder(work)
    assert (work / ".simcast").is_file()
    replay.check(args)  # a replay's own folder: taken again
