"""The GPU check's dry run on the CPU: the same script, tiny sizes, every section measured (so it cannot rot
between GPU runs). The values are the CPU's; only their presence and sense are checked, never their speed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO
from .wheels import canonical, listed, on_the_machine


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "WHEELS": "", "PYTHON": sys.executable, "OUT": str(root / "out"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--tiny", "--work",
                           str(root / "work")], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out", json.loads((root / "out/gpu_check.json").read_text())


@pytest.mark.slow
def test_the_dry_run_writes_every_section(dry_run):
    out, results = dry_run
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]
    assert set(results) >= {"environment", "chain", "throughput", "openstl_fps", "input_path", "torchrun", "goals"}
    assert not [name for name, section in results.items() if isinstance(section, dict) and "error" in section]
    assert "| chain_exit_codes | [0, 0, 0, 0, 0, 0, 0, 0] | all 0 | True |" in (out / "gpu_check.md").read_text()


@pytest.mark.slow
def test_environment(dry_run):
    import torch
    import zarr

    env = dry_run[1]["environment"]
    assert env["torch"] == torch.__version__ and env["cuda_available"] is False
    assert env["packages"]["zarr"] == zarr.__version__ and env["nvidia_smi"] == "not found"


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["era5-uk-t2m", "nybike"])
def test_the_chain_of_each_sample(dry_run, dataset):
    steps = dry_run[1]["chain"][dataset]
    assert [steps[k]["exit_code"] for k in ("ingest", "evaluate", "forecast")] == [0, 0, 0]
    (train,) = steps["train"]
    assert train["exit_code"] == 0 and Path(train["checkpoint"]).is_file()
    assert positive(train["best_val_loss"]) and positive(train["samples_per_s"]) and positive(train["peak_rss_bytes"])
    assert train["peak_gpu_bytes"] is None  # the CPU
    scores = steps["evaluate"]["scores"]
    assert positive(scores["model"]) and positive(scores["persistence"])
    written = steps["forecast"]["stdout"].split()
    assert written and all(Path(p).exists() for p in written)
    references = steps["reference_cpu_fp32"]
    assert len(references) == 2 and references[0] is not references[1] or references[0] == train
    assert len({r["checkpoint"] for r in references}) == 2 and all(r["exit_code"] == 0 for r in references)
    # (their losses may coincide: a dry run of a few steps stays at the fitted-forecast start of the ERA5 default)
    assert steps["val_loss_within_cpu_seed_spread"] is True  # the seed-1 run is one of the references
    for step in ("ingest", "evaluate", "forecast"):  # everything they import travels to the GPU machine
        missing = {canonical(d) for d in steps[step]["distributions"]} - set(listed()) - on_the_machine()
        assert missing <= {"simcast", "pyproj"}, (step, missing)  # the forecast's CRS has a fallback without pyproj


@pytest.mark.slow
def test_throughput_and_openstl_fps(dry_run):
    results = dry_run[1]
    records = results["throughput"]
    assert {(r["path"], r["phase"]) for r in records} == {("eager", "infer"), ("eager", "train"), ("bf16", "infer"),
                                                           ("tf32", "infer"), ("tf32", "train")}
    assert all(positive(r["samples_per_s"]) and "error" not in r for r in records)
    assert all(positive(r["steps_per_s"]) for r in records if r["phase"] == "train")
    (bf16,) = [r for r in records if r["path"] == "bf16"]
    assert 0 < bf16["rel_err"] < 0.05 and all(r["strict_fp32"] for r in records)
    fps = results["openstl_fps"]
    assert {r["path"] for r in fps} == {"eager", "bf16"} and all(r["batch"] == 2 for r in fps)
    assert all(r["openstl_v100_fps"] == 1217 and positive(r["over_openstl"]) for r in fps)
    goals = results["goals"]
    assert goals["bf16_rel_err"]["value"] == bf16["rel_err"] and goals["bf16_rel_err"]["met"] is True
    assert positive(goals["inference_speedup"]["value"]) and positive(goals["fps_over_openstl"]["value"])


@pytest.mark.slow
def test_input_path_and_torchrun(dry_run):
    results = dry_run[1]
    inputs = results["input_path"]
    assert inputs["exit_code"] == 0 and inputs["grid"] == [128, 256] and inputs["train_windows"] > 0
    for loader in ("streamed", "in_memory", "training"):
        assert positive(inputs[loader]["samples_per_s"]), loader
    assert inputs["input_over_training"] == pytest.approx(
        inputs["streamed"]["samples_per_s"] / inputs["training"]["samples_per_s"], rel=1e-2)
    assert results["goals"]["input_over_training"]["value"] == inputs["input_over_training"]
    run = results["torchrun"]
    assert run["exit_code"] == 0 and Path(run["checkpoint"]).is_file() and positive(run["best_val_loss"])
