"""What a user sees when the GPU is missing or runs out of memory: one line and an exit code, no traceback."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import simvp.trainer.loop as loop
from pipelines import synth
from pipelines.cli import app

from ..conftest import TINY_WB, ingest, write_catalog

runner = CliRunner()
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    synth.write_weatherbench(tmp_path / "data/wb", "2010-01-01", "2010-01-07", resolution=1.0,
                             region=((50.0, 58.0), (-10.0, 2.0)))
    monkeypatch.setenv("SIMCAST_CATALOG", str(write_catalog(tmp_path / "cat.yaml", {"tiny-wb": TINY_WB})))
    ingest("tiny-wb", progress=False)
    return tmp_path


def _one_line(result) -> str:
    """The error line: the last line of the output (progress lines may come before it), the only error."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    return lines[-1]


@no_gpu
def test_cuda_on_a_machine_without_one_names_the_option_and_what_to_use(tiny):
    trained = runner.invoke(app, ["train", "tiny-wb", "--device", "cpu"])
    assert trained.exit_code == 0, trained.output
    checkpoint = trained.stdout.strip().splitlines()[-1]
    for command in (["train", "tiny-wb"], ["evaluate", "tiny-wb", "--checkpoint", checkpoint],
                    ["forecast", "tiny-wb", "--checkpoint", checkpoint, "--out", "fc"]):
        result = runner.invoke(app, [*command, "--device", "cuda"])
        assert result.exit_code == 2, (command, result.output)
        line = _one_line(result)
        assert line.startswith("error: --device: 'cuda' asked for, but CUDA is not available on this machine")
        assert line.endswith("use cpu, or auto to take a GPU only when there is one")
    assert len(list((tiny / "runs").iterdir())) == 1 and not (tiny / "fc").exists()  # refused before any work


def _out_of_memory(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_in_a_training_step_is_one_line_with_half_the_batch(tiny, monkeypatch):
    monkeypatch.setattr(loop, "_train_step", _out_of_memory)
    result = runner.invoke(app, ["train", "tiny-wb", "--device", "cpu", "--batch-size", "8"])
    assert result.exit_code == 1
    line = _one_line(result)
    assert line.startswith("error: ") and "cpu ran out of memory in a training step at batch size 8" in line
    assert line.endswith("try --batch-size 4")


def test_out_of_memory_in_validation_names_the_evaluation_batch(tiny, monkeypatch):
    real_check = loop._check_shapes

    def check_then_fail(pred, y):  # the training loss checks shapes too: fail only in eval mode
        real_check(pred, y)
        if not torch.is_grad_enabled():
            _out_of_memory()

    monkeypatch.setattr(loop, "_check_shapes", check_then_fail)
    result = runner.invoke(app, ["train", "tiny-wb", "--device", "cpu", "--batch-size", "8",
                                 "--eval-batch-size", "6"])
    assert result.exit_code == 1
    line = _one_line(result)
    assert "ran out of memory in evaluation at batch size 6" in line and line.endswith("try --eval-batch-size 3")


def test_out_of_memory_on_cuda_without_bf16_also_suggests_it():
    from pipelines.train import out_of_memory_line
    from simvp.trainer import DeviceOutOfMemory

    line = out_of_memory_line("runs/x", DeviceOutOfMemory("cuda:0", "a training step", 1, amp=False))
    assert line == "runs/x: cuda:0 ran out of memory in a training step at batch size 1; try --batch-size 1 " \
                   "or bf16 autocast (--amp)"


def test_other_errors_in_a_step_keep_their_traceback(tiny, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(loop, "_train_step", bug)
    result = runner.invoke(app, ["train", "tiny-wb", "--device", "cpu"])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
