"""The chain on a tiny synthetic WeatherBench set: train -> evaluate -> forecast (rollout) -> report,
and checkpoints that do not fit the store are refused."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines import synth
from pipelines.cli import app
from pipelines.forecast.output import open_forecast

from pipelines.specs import TrainSpec

from ..conftest import TINY_WB, ingest, write_catalog

runner = CliRunner()

ENTRY = {**TINY_WB, "source": {"pattern": "tiny/2m_temperature/*.nc"}, "store": "tiny.zarr",
         "training": {**TINY_WB["training"], "epochs": 2}}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    synth.write_weatherbench(tmp_path / "data/tiny", "2010-01-01", "2010-01-07", resolution=1.0,
                             region=((50.0, 58.0), (-10.0, 2.0)))
    other = {**ENTRY, "store": "other.zarr", "normalization": "minmax"}
    monkeypatch.setenv("SIMCAST_CATALOG", str(write_catalog(tmp_path / "cat.yaml", {"tiny": ENTRY, "other": other})))
    ingest("tiny", progress=False)
    return tmp_path


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_train_evaluate_forecast_report(tiny):
    best = _ok(runner.invoke(app, ["train", "tiny", "--device", "cpu", "--out", str(tiny / "run")]))
    assert best.endswith("best.pt") and (tiny / "run/metrics.csv").is_file()

    metrics_path = _ok(runner.invoke(app, ["evaluate", "tiny", "--checkpoint", best, "--out", str(tiny / "eval")]))
    metrics = json.loads(open(metrics_path).read())
    assert list(metrics) == ["model", "persistence", "previous_day", "climatology", "fitted", "scorecard"]
    assert len(metrics["model"]["by_lead"]["rmse"]) == 6 and metrics["model"]["rmse_weighted"] > 0

    # 15 h from a 6 -> 6 model: rollout, with time features for the future frames
    out = _ok(runner.invoke(app, ["forecast", "tiny", "--checkpoint", best, "--out", str(tiny / "fc"),
                                  "--init-time", "2010-01-06T00:00/2010-01-06T12:00/6h", "--lead-hours", "15"]))
    fc = open_forecast(out)
    assert fc["t2m"].dims == ("init_time", "lead_time", "lat", "lon") and fc["t2m"].shape == (3, 15, 9, 13)
    assert fc["t2m"].attrs["units"] == "K" and fc["t2m"].attrs["grid_mapping"] == "crs"
    assert pd.Timedelta(fc["lead_time"].values[-1]) == pd.Timedelta("15h")
    assert 240 < float(fc["t2m"].mean()) < 320  # physical units
    assert bool(fc.attrs["rollout"]) if not isinstance(fc.attrs["rollout"], str) else fc.attrs["rollout"] in ("True", "true", "1")

    # every published lead scored: 15 h by the same rollout, next to the baselines on the same samples
    long_path = _ok(runner.invoke(app, ["evaluate", "tiny", "--checkpoint", best, "--out", str(tiny / "eval15"),
                                        "--lead-hours", "15"]))
    long = json.loads(open(long_path).read())
    for name in ("model", "persistence", "previous_day", "climatology"):
        assert len(long[name]["by_lead"]["rmse"]) == 15
        assert long[name]["lead_hours"] == list(range(1, 16)) and long[name]["trained_hours"] == 6
    # the first 6 leads are the direct output: the same model forecasts as the 6 h evaluation, on fewer samples
    # (a 15 h window needs 9 more steps of truth); the baselines' persistence error grows with the lead
    assert long["persistence"]["by_lead"]["rmse"][14] > long["persistence"]["by_lead"]["rmse"][0]

    html = _ok(runner.invoke(app, ["report", str(tiny / "fc.zarr"), "--out", str(tiny / "report"),
                                   "--truth", str(tiny / "stores/tiny.zarr"), "--metrics", long_path, "--lead", "6"]))
    assert html.endswith("report.html") and list((tiny / "report").rglob("*.png"))
    page = open(html).read()
    assert "(RMSE (area-weighted))" in page and ("The model is not behind persistence at any lead" in page
                                                  or "The model is behind persistence at" in page)
    assert "95% block-bootstrap interval" in page and "scorecard.png" in page


@pytest.mark.slow
def test_checkpoint_for_another_store_is_refused(tiny):
    best = _ok(runner.invoke(app, ["train", "tiny", "--device", "cpu", "--epochs", "1", "--out", str(tiny / "run")]))
    ingest("other", progress=False)  # same data, other normalization
    r = runner.invoke(app, ["evaluate", "other", "--checkpoint", best])
    assert r.exit_code == 1 and "checkpoint was trained on normalization zscore" in r.output
    bad = tiny / "bad.pt"
    raw = open(best, "rb").read()
    bad.write_bytes(raw[: len(raw) // 2])
    r = runner.invoke(app, ["forecast", "tiny", "--checkpoint", str(bad), "--out", str(tiny / "x")])
    assert r.exit_code == 1 and str(bad) in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tiny / "x.zarr").exists()


def test_catalog_training_defaults_reach_the_trainer(tmp_path, monkeypatch):
    body = {**ENTRY, "training": {"preset": "weatherbench-t2m-5.625deg", "optimizer": "adamw", "weight_decay": 0.05,
                                  "epochs": 5, "lr": 1e-3, "schedule": "onecycle"}}
    monkeypatch.setenv("SIMCAST_CATALOG", str(write_catalog(tmp_path / "cat.yaml", {"t": body})))
    config = TrainSpec.from_catalog("t", device="cpu").training
    assert (config.optimizer, config.weight_decay, config.epochs, config.lr, config.schedule) == (
        "adamw", 0.05, 5, 1e-3, "onecycle")
    flagged = TrainSpec.from_catalog("t", epochs=2, lr=0.1, batch_size=None).training
    assert (flagged.epochs, flagged.lr, flagged.optimizer) == (2, 0.1, "adamw")  # options win, unset ones do not
    assert flagged.batch_size == 16  # the preset's recipe


def _tree(folder):
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_resume_changes_nothing_and_the_plain_resume_still_works(tiny):
    run = tiny / "run"
    args = ["train", "tiny", "--device", "cpu", "--out", str(run), "--epochs", "1", "--max-steps-per-epoch", "2"]
    _ok(runner.invoke(app, args))
    before = _tree(run)
    for change in (["--lr", "0.5"], ["--seed", "7"], ["--batch-size", "4"]):
        result = runner.invoke(app, [*args, "--resume", *change])
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert f"{run}/last.pt: cannot resume with a different training config" in lines[0]
        assert _tree(run) == before, change  # spec.json keeps the run's own settings
    assert "lr=0.01->0.5" in runner.invoke(app, [*args, "--resume", "--lr", "0.5"]).stderr
    _ok(runner.invoke(app, ["train", "tiny", "--device", "cpu", "--resume", "--out", str(run)]))


@pytest.mark.parametrize("change, says", [
    ({"hid_S": "abc"}, "field model.hid_S: must be an integer >= 1, got 'abc'"),
    ({"N_T": -2}, "field model.N_T: must be an integer >= 1, got -2"),
    ({"drop_path": 1.5}, "field model.drop_path: must be a number in [0, 1), got 1.5"),
    ({"hid_Z": 3}, "field model.hid_Z: not a SimVP setting"),
    ({"hid_S": 100000000}, "field model: a SimVP of"),
    ({"hid_S": 20000, "hid_T": 40000}, "available; choose a smaller model"),  # ~2 TiB
])
def test_a_spec_file_is_checked_like_the_catalog(tiny, change, says):
    spec = TrainSpec.from_catalog("tiny", run_dir=tiny / "run")
    doc = json.loads(spec.dump())
    doc["model"].update(change)
    doc["run_dir"] = str(tiny / "new-run")
    (tiny / "my spec.json").write_text(json.dumps(doc))
    result = runner.invoke(app, ["train", "tiny", "--device", "cpu", "--spec", str(tiny / "my spec.json")])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1, (result.output, result.exception)
    assert lines[0].startswith(f"error: {tiny / 'my spec.json'}: ") and says in lines[0], lines[0]
    assert not (tiny / "new-run").exists()
