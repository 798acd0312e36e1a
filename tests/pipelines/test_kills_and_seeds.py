"""A killed step leaves every previous output intact and can simply be rerun; a seed reproduces a run bitwise.

The kills are real SIGKILLs of a real `simcast` process (tests/killing.py) at fixed points: in the middle of
training, just before a finished output is swapped into place, and just after it (before the previous output is
dropped).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from pipelines import synth
from pipelines.cli import app
from simvp.checkpoint import load_checkpoint

from ..conftest import REPO, TINY_WB, write_catalog

pytestmark = pytest.mark.slow

CKPT = "runs/first/best.pt"
TRAIN = ["train", "tiny-wb", "--device", "cpu", "--epochs", "3", "--max-steps-per-epoch", "3", "--deterministic"]


def simcast(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def killed(point: str, n: int, *args: str, cwd: Path) -> None:
    """Run `simcast args` in a new process that SIGKILLs itself at the nth `point`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-m", "tests.killing", point, str(n), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    w = tmp_path_factory.mktemp("kills")
    synth.write_weatherbench(w / "data/wb", "2010-01-01", "2010-01-07", resolution=1.0,
                             region=((50.0, 58.0), (-10.0, 2.0)))
    write_catalog(w / "catalog.yaml", {"tiny-wb": TINY_WB})
    env = {"SIMCAST_DATA_ROOT": str(w / "data"), "SIMCAST_STORE_ROOT": str(w / "stores"),
           "SIMCAST_RUNS_ROOT": str(w / "runs"), "SIMCAST_OUTPUT_ROOT": str(w / "outputs"),
           "SIMCAST_CATALOG": str(w / "catalog.yaml")}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(w)
        for k, v in env.items():
            mp.setenv(k, v)
        simcast("ingest", "tiny-wb")
        simcast("train", "tiny-wb", "--device", "cpu", "--out", "runs/first", "--max-steps-per-epoch", "2")
    return w, env


@pytest.fixture
def ws(workspace, monkeypatch) -> Path:
    w, env = workspace
    monkeypatch.chdir(w)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return w


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- training -----------------------------------------------------------------------------------------

def test_a_seed_reproduces_a_run_bitwise(ws):
    simcast(*TRAIN, "--seed", "1", "--out", "runs/seed1-a")
    simcast(*TRAIN, "--seed", "1", "--out", "runs/seed1-b")
    simcast(*TRAIN, "--seed", "2", "--out", "runs/seed2")
    for name in ("best.pt", "last.pt"):
        assert same_weights(weights(ws / "runs/seed1-a" / name), weights(ws / "runs/seed1-b" / name))
    assert not same_weights(weights(ws / "runs/seed1-a/last.pt"), weights(ws / "runs/seed2/last.pt"))
    history = [json.loads((ws / f"runs/seed1-{x}/history.json").read_text()) for x in "ab"]
    assert [r["train_loss"] for r in history[0]] == [r["train_loss"] for r in history[1]]


def test_a_killed_run_resumed_ends_bitwise_equal_to_an_uninterrupted_one(ws):
    simcast(*TRAIN, "--seed", "3", "--out", "runs/whole")
    # 3 steps an epoch: the kill comes in the middle of epoch 2, after epoch 1's last.pt
    killed("step", 5, *TRAIN, "--seed", "3", "--out", "runs/killed", cwd=ws)
    assert len(json.loads((ws / "runs/killed/history.json").read_text())) == 1
    simcast("train", "tiny-wb", "--device", "cpu", "--resume", "--out", "runs/killed")  # settings from spec.json
    for name in ("best.pt", "last.pt"):
        assert same_weights(weights(ws / "runs/whole" / name), weights(ws / "runs/killed" / name))
    whole, resumed = (json.loads((ws / f"runs/{x}/history.json").read_text()) for x in ("whole", "killed"))
    assert [r["val_loss"] for r in whole] == [r["val_loss"] for r in resumed]


# ---- outputs --------------------------------------------------------------------------------------------

def _tree(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted([path, *path.rglob("*")]) if path.is_dir() else [path]:
        h.update(str(p.relative_to(path.parent)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _store_content(path: Path):
    ds = xr.open_zarr(path, consolidated=True)
    return ds["data"].values.tobytes(), ds.attrs["fingerprint"]


def _forecast_content(path: Path):
    ds = xr.open_zarr(path.with_suffix(".zarr"), consolidated=True)
    return str(ds["init_time"].values), {v: ds[v].values.tobytes() for v in ds.data_vars if "lead_time" in ds[v].dims}


def _scores(path: Path):
    return json.loads((path / "metrics.json").read_text())


def _report_content(path: Path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.name != ".simcast")


# stage: (the output's path, the command that wrote it, the command that replaces it, what to compare)
STAGES = {
    "ingest": ("stores/tiny-wb.zarr", ["ingest", "tiny-wb"], ["ingest", "tiny-wb", "--force"], _store_content),
    "evaluate": ("evals/e", ["evaluate", "tiny-wb", "--checkpoint", CKPT, "--device", "cpu", "--out", "evals/e"],
                 ["evaluate", "tiny-wb", "--checkpoint", CKPT, "--device", "cpu", "--out", "evals/e",
                  "--lead-hours", "3"], _scores),
    "forecast": ("fc/f.zarr", ["forecast", "tiny-wb", "--checkpoint", CKPT, "--device", "cpu", "--out", "fc/f",
                               "--init-time", "2010-01-06T00:00"],
                 ["forecast", "tiny-wb", "--checkpoint", CKPT, "--device", "cpu", "--out", "fc/f",
                  "--init-time", "2010-01-06T06:00"], _forecast_content),
    "report": ("reports/r", ["report", "fc/f.zarr", "--out", "reports/r"],
               ["report", "fc/f.zarr", "--out", "reports/r", "--lead", "3"], _report_content),
}


def _other(args: list[str], target: str, other: str) -> list[str]:
    """The same command writing to another path (for the uninterrupted reference)."""
    stem, new = target.removesuffix(".zarr"), other.removesuffix(".zarr")
    if "--out" in args:
        return [new if a == stem else a for a in args]
    return [*args, "--store", other]


@pytest.mark.parametrize("point", ["swap", "swapped"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_killed_write_keeps_the_previous_output_and_a_rerun_completes(ws, stage, point):
    target, first, again, content = STAGES[stage]
    path = ws / target
    if stage == "report":  # reports a forecast
        simcast(*STAGES["forecast"][1])
    simcast(*first)
    before = _tree(path)
    reference = ws / f"reference/{stage}-{point}/{path.name}"
    simcast(*_other(again, target, str(reference)))

    killed(point, 1, *again, cwd=ws)
    if point == "swap":  # killed before the new output was in place: the previous one is untouched
        assert _tree(path) == before
    else:  # killed after the exchange: the new output is there, complete
        assert content(path) == content(reference)

    simcast(*again)
    assert content(path) == content(reference)
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    assert leftovers == [], leftovers
