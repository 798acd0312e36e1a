"""The SimVP trainer on tiny models and moving-blob data (CPU, fast)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import simvp
from data_catalog.presets import load_preset, preset_names
from simvp.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from simvp.schedules import cosine_lr, lr_curve
from simvp.trainer import (
    DeviceError, TrainConfig, WindowData, epoch_permutation, evaluate, predict, resolve_device,
    seed_everything, tau_weight_for, train, training_loss,
)
from simvp.translators import differential_divergence_loss

TINY = dict(in_shape=(4, 1, 16, 16), hid_S=8, hid_T=16, N_S=2, N_T=2)


def tiny(translator="gsta", seed=0, **overrides) -> simvp.SimVP:
    torch.manual_seed(seed)
    return simvp.SimVP(**{**TINY, "translator": translator, **overrides})


class Blobs:
    """Gaussian blobs drifting with constant velocity on a 16 x 16 torus, standardized:
    x = frames 0..3, y = frames 4..7 (first `out_channels` channels)."""

    def __init__(self, n: int, seed: int, channels: int = 1, out_channels: int | None = None,
                 size: int = 16, t_in: int = 4, t_out: int = 4):
        g = torch.Generator().manual_seed(seed)
        pos = torch.rand(n, 2, generator=g) * size
        vel = (torch.rand(n, 2, generator=g) - 0.5) * 2.0
        t = torch.arange(t_in + t_out, dtype=torch.float32)
        grid = torch.arange(size, dtype=torch.float32)
        centre = (pos[:, None, :] + vel[:, None, :] * t[None, :, None]) % size        # (n, T, 2)
        d = torch.remainder(grid - centre[..., None] + size / 2, size) - size / 2     # (n, T, 2, S)
        frames = torch.exp(-(d[:, :, 0, :, None] ** 2 + d[:, :, 1, None, :] ** 2) / (2 * 1.5**2))
        frames = (frames - frames.mean()) / frames.std()
        self.frames = frames[:, :, None].repeat(1, 1, channels, 1, 1).contiguous()
        self.t_in, self.out_channels = t_in, out_channels or channels
        self.calls = 0

    def __len__(self) -> int:
        return len(self.frames)

    def batch(self, index):
        self.calls += 1
        f = self.frames[index]
        return f[:, : self.t_in], f[:, self.t_in:, : self.out_channels]


class Drifting(Blobs):
    """Validation data that disagree with training: the targets move further off after every
    full pass, so the validation loss rises while the training loss falls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = 0
        self.offset_fixed = None

    def batch(self, index):
        offset = self.served // len(self) if self.offset_fixed is None else self.offset_fixed
        self.served += len(index)
        x, y = super().batch(index)
        return x, y + 2.0 * offset


class Killed(Exception):
    pass


class KillAfter(Blobs):
    """Training data whose process 'dies' at the given batch call."""

    def __init__(self, *args, kill_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.kill_at = kill_at

    def batch(self, index):
        if self.calls + 1 == self.kill_at:
            raise Killed
        return super().batch(index)


def config(**overrides) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, lr=5e-3, seed=0, deterministic=True, device="cpu",
                schedule="cosine")
    return TrainConfig(**{**base, **overrides})


META = {"catalog_entry": {"name": "blobs"}, "window": {"input": 4, "output": 4},
        "normalization": {"t2m": {"mean": 0.0, "std": 1.0}}, "simcast_version": "0.1.0"}


def test_tiny_run_trains_and_writes_run_files(tmp_path):
    lines: list[str] = []
    model = tiny()
    result = train(model, Blobs(32, seed=1), Blobs(8, seed=2), config(epochs=4, batch_size=8),
                   tmp_path / "run", META, progress=True, log=lines.append)
    history = result.history
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert min(r["val_loss"] for r in history[1:]) < history[0]["val_loss"]
    assert result.best_val_loss == min(r["val_loss"] for r in history)
    assert result.best_path.is_file() and result.last_path.is_file()
    assert history[-1]["step"] == 4 * 4 and not result.stopped_early

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "lr", "seconds", "samples_per_s"} <= set(rows[0])
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == history
    assert any("samples/s" in line and "ETA" in line and "step 4/4" in line for line in lines)
    assert any(line.startswith("epoch 4/4:") for line in lines)

    last = load_checkpoint(result.last_path)
    assert last["state"]["epoch"] == 4 and last["state"]["history"] == history
    assert last["meta"]["catalog_entry"] == META["catalog_entry"]
    assert last["meta"]["model_config"] == model.config.to_dict()
    assert last["meta"]["train_config"]["lr"] == 5e-3
    for name, tensor in model.state_dict().items():  # the model holds the last epoch's weights
        assert torch.equal(last["model"][name], tensor)


def test_best_checkpoint_is_chosen_by_validation_loss_only(tmp_path):
    val = Drifting(8, seed=2)
    result = train(tiny(), Blobs(32, seed=1), val, config(epochs=3, batch_size=8), tmp_path,
                   META, progress=False)
    train_losses = [r["train_loss"] for r in result.history]
    val_losses = [r["val_loss"] for r in result.history]
    assert train_losses.index(min(train_losses)) != 0       # training keeps improving ...
    assert val_losses == sorted(val_losses)                  # ... validation only gets worse
    assert result.best_epoch == 1 and result.best_val_loss == val_losses[0]
    best = load_checkpoint(result.best_path)
    assert best["state"]["epoch"] == 1 and best["state"]["best_epoch"] == 1
    val.offset_fixed = 0                                     # the data as seen in epoch 1
    assert evaluate(model_from_checkpoint(best), val, 4) == pytest.approx(val_losses[0], rel=1e-6)
    assert load_checkpoint(result.last_path)["state"]["best_epoch"] == 1


def test_early_stopping_stops_and_resume_does_not_restart(tmp_path):
    cfg = config(epochs=8, batch_size=8, patience=2, max_steps_per_epoch=1)
    result = train(tiny(), Blobs(16, seed=1), Drifting(4, seed=2), cfg, tmp_path, META,
                   progress=False)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    again = train(tiny(), Blobs(16, seed=1), Drifting(4, seed=2), cfg, tmp_path, META,
                  resume=True, progress=False)
    assert again.stopped_early and again.history == result.history


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    cfg = config(epochs=4, batch_size=4, max_steps_per_epoch=3, schedule="onecycle")
    settings = dict(translator="tau", drop=0.1, drop_path=0.2)  # dropout/drop path use the RNG
    whole = tiny(**settings)
    reference = train(whole, Blobs(16, seed=1), Blobs(4, seed=2), cfg, tmp_path / "a", META,
                      progress=False)

    # the process dies in epoch 3 (after last.pt of epoch 2 was written), mid-epoch
    with pytest.raises(Killed):
        train(tiny(**settings), KillAfter(16, seed=1, kill_at=2 * 3 + 2), Blobs(4, seed=2), cfg,
              tmp_path / "b", META, progress=False)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["state"]["epoch"] == 2
    # a new process: fresh model with other initial weights; last.pt supplies everything
    resumed_model = tiny(seed=123, **settings)
    resumed = train(resumed_model, Blobs(16, seed=1), Blobs(4, seed=2), cfg, tmp_path / "b", META,
                    resume=True, progress=False)

    for name, tensor in whole.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], tensor), name
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")}
                       for r in h]
    assert strip(resumed.history) == strip(reference.history)
    assert resumed.best_epoch == reference.best_epoch
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 12
    assert len((tmp_path / "b" / "metrics.csv").read_text().splitlines()) == 1 + 4


def test_resume_refuses_a_changed_config_and_a_fresh_run_refuses_an_old_folder(tmp_path):
    cfg = config(epochs=2, batch_size=8, max_steps_per_epoch=1)
    train(tiny(), Blobs(16, seed=1), Blobs(4, seed=2), cfg, tmp_path, META, progress=False)
    with pytest.raises(FileExistsError, match=r"holds a previous run \(last\.pt\); resume it or use a new "
                                              r"run folder") as exc:
        train(tiny(), Blobs(16, seed=1), Blobs(4, seed=2), cfg, tmp_path, META, progress=False)
    assert "resume=True" not in str(exc.value)
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot resume with a different training "
                                              r"config \(lr=0\.005->0\.001\)"):
        train(tiny(), Blobs(16, seed=1), Blobs(4, seed=2), config(epochs=2, batch_size=8,
              max_steps_per_epoch=1, lr=1e-3), tmp_path, META, resume=True, progress=False)
    with pytest.raises(CheckpointError, match=r"other data or another model \(differs in: normalization\)"):
        train(tiny(), Blobs(16, seed=1), Blobs(4, seed=2), cfg, tmp_path,
              {**META, "normalization": {}}, resume=True, progress=False)
    # a new simcast version may resume
    train(tiny(), Blobs(16, seed=1), Blobs(4, seed=2), cfg, tmp_path,
          {**META, "simcast_version": "0.2.0"}, resume=True, progress=False)


def test_resume_of_other_data_names_the_data_before_the_config(tmp_path):
    """Another data set's (or model's) last.pt is refused for that reason, not for its settings."""
    cfg = config(epochs=2, batch_size=8, max_steps_per_epoch=1)
    train(tiny(), Blobs(16, seed=1), Blobs(4, seed=2), cfg, tmp_path, META, progress=False)
    other = {**META, "catalog_entry": {"name": "other"}, "dataset": "other"}
    with pytest.raises(CheckpointError) as exc:
        train(tiny(), Blobs(16, seed=1), Blobs(4, seed=2), config(epochs=5, batch_size=8, lr=1e-3),
              tmp_path, other, resume=True, progress=False)
    message = str(exc.value)
    assert message == (f"{tmp_path / 'last.pt'}: cannot resume: the run in {tmp_path} was trained on other "
                       f"data or another model (differs in: catalog_entry, dataset); use a new run folder")
    with pytest.raises(CheckpointError, match=r"another model \(differs in: model_config\)"):
        train(tiny(hid_T=32), Blobs(16, seed=1), Blobs(4, seed=2), config(epochs=5, batch_size=8),
              tmp_path, META, resume=True, progress=False)


def test_seed_everything_fixes_the_initial_weights():
    def weights(seed):
        seed_everything(seed)
        return simvp.SimVP(**TINY, drop_path=0.1).state_dict()

    one, again, two = weights(1), weights(1), weights(2)
    assert all(torch.equal(one[name], again[name]) for name in one)
    assert not all(torch.equal(one[name], two[name]) for name in one)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_is_a_device_error():
    with pytest.raises(DeviceError, match="^device 'cuda' requested but CUDA is not available on this machine$"):
        resolve_device("cuda")
    assert isinstance(DeviceError("x"), ValueError)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError):
        train(tiny(), Blobs(8, seed=1), Blobs(4, seed=2), config(device="cuda:0"), "run", progress=False)


def test_tau_regularizer_is_added_for_the_tau_translator(tmp_path):
    pred, y = torch.randn(2, 4, 2, 8, 8), torch.randn(2, 4, 1, 8, 8)
    mse = torch.mean((pred[:, :, :1] - y) ** 2)
    loss, plain = training_loss(pred, y, tau_weight=0.5)
    assert torch.allclose(plain, mse)
    assert torch.allclose(loss, mse + 0.5 * differential_divergence_loss(pred[:, :, :1], y))
    assert torch.allclose(training_loss(pred, y)[0], mse)  # no regularizer by default

    cfg = config(epochs=1, batch_size=8, max_steps_per_epoch=1, tau_weight=0.5)
    assert tau_weight_for(tiny("tau"), cfg) == 0.5
    assert tau_weight_for(tiny("gsta"), cfg) == 0.0
    tau_run = train(tiny("tau"), Blobs(8, seed=1), Blobs(4, seed=2), cfg, tmp_path / "tau",
                    progress=False).history[0]
    assert tau_run["train_loss"] > tau_run["train_mse"]
    gsta_run = train(tiny("gsta"), Blobs(8, seed=1), Blobs(4, seed=2), cfg, tmp_path / "gsta",
                     progress=False).history[0]
    assert gsta_run["train_loss"] == gsta_run["train_mse"]


def test_extra_input_channels_are_ignored_by_the_loss(tmp_path):
    """Time features as extra input channels: the model predicts C_in, the loss uses C_out."""
    model = tiny(in_shape=(4, 3, 16, 16))
    data = Blobs(8, seed=1, channels=3, out_channels=1)
    assert isinstance(data, WindowData)
    result = train(model, data, Blobs(4, seed=2, channels=3, out_channels=1),
                   config(epochs=1, batch_size=4), tmp_path, progress=False)
    assert math.isfinite(result.best_val_loss)
    seen = list(predict(model, Blobs(5, seed=2, channels=3, out_channels=1), batch_size=2))
    assert [p.index.tolist() for p in seen] == [[0, 1], [2, 3], [4]]
    assert all(p.prediction.shape == p.target.shape == (len(p.index), 4, 1, 16, 16) for p in seen)
    assert not model.training


def test_mismatched_model_and_data_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        train(tiny(), Blobs(3, seed=1), Blobs(4, seed=2), config(batch_size=4), tmp_path,
              progress=False)
    with pytest.raises(ValueError, match=r"does not fit the targets"):
        training_loss(torch.zeros(2, 4, 1, 8, 8), torch.zeros(2, 3, 1, 8, 8))


def test_shuffle_depends_only_on_seed_and_epoch():
    assert torch.equal(epoch_permutation(50, 7, 3), epoch_permutation(50, 7, 3))
    assert not torch.equal(epoch_permutation(50, 7, 3), epoch_permutation(50, 7, 4))
    assert sorted(epoch_permutation(50, 7, 3).tolist()) == list(range(50))


def recipe(name: str, **overrides) -> TrainConfig:
    return TrainConfig(**{**load_preset(name).training, "recipe": name, **overrides})


def test_recipes_follow_the_released_configs():
    wb = recipe("weatherbench-t2m-5.625deg")
    assert (wb.lr, wb.schedule, wb.epochs, wb.batch_size, wb.warmup_epochs) == (5e-3, "cosine", 50, 16, 0)
    assert recipe("taxibj").epochs == 50
    tx = recipe("taxibj", epochs=10)
    assert (tx.lr, tx.schedule, tx.epochs, tx.batch_size, tx.warmup_epochs) == (5e-4, "cosine", 10, 16, 5)
    assert tx.recipe == "taxibj" and tx.optimizer == "adam" and tx.weight_decay == 0.0
    assert (tx.min_lr, tx.warmup_lr) == (1e-6, 1e-5)
    assert {n for n in preset_names() if load_preset(n).training} == {"weatherbench-t2m-5.625deg", "taxibj"}
    with pytest.raises(ValueError, match="warmup_epochs"):
        recipe("taxibj", epochs=5)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(TypeError):
        recipe("taxibj", nonsense=1)


def test_cosine_with_warmup_curve():
    curve = lr_curve("cosine", 100, 1e-3, warmup_steps=10, min_lr=1e-6, warmup_lr=1e-5)
    assert curve[0] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(curve[:10], curve[1:11]))       # warm-up rises
    assert curve[10] == pytest.approx(1e-3) and max(curve) == curve[10]
    assert all(a >= b for a, b in zip(curve[10:], curve[11:]))       # then only falls
    assert curve[-1] < 1e-5 and cosine_lr(100, 100, 1e-3, 10) == pytest.approx(1e-6)
    no_warmup = lr_curve("cosine", 50, 5e-3)
    assert no_warmup[0] == pytest.approx(5e-3) and no_warmup[-1] < 1e-4


def test_one_cycle_curve():
    curve = lr_curve("onecycle", 100, 1e-3)
    peak = curve.index(max(curve))
    assert 25 <= peak <= 35 and max(curve) == pytest.approx(1e-3)
    assert curve[0] == pytest.approx(1e-3 / 25)
    assert all(a <= b for a, b in zip(curve[:peak], curve[1:peak + 1]))
    assert all(a >= b for a, b in zip(curve[peak:], curve[peak + 1:]))
    assert curve[-1] < 1e-6
