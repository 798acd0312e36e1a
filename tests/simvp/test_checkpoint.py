"""Checkpoint files: atomic, loadable with weights_only=True, verified, refused with one line."""

from __future__ import annotations

import json
import os

import pytest
import torch

import simvp
from simvp import checkpoint as ckpt_module
from simvp.checkpoint import (
    FORMAT, CheckpointError, load_checkpoint, model_from_checkpoint, require_meta, save_checkpoint,
)
from simvp.schedules import cosine_with_warmup

META = {"catalog_entry": {"name": "wb", "grid": [32, 64]}, "window": {"input": 4, "output": 4},
        "normalization": {"mean": [280.5], "std": [12.25]}, "simcast_version": "0.1.0"}


@pytest.fixture
def parts():
    torch.manual_seed(0)
    model = simvp.SimVP(in_shape=(4, 1, 16, 16), hid_S=8, hid_T=16, N_S=2, N_T=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = cosine_with_warmup(optimizer, total_steps=10, warmup_steps=2)
    x = torch.randn(2, 4, 1, 16, 16)
    model(x).pow(2).mean().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler, x


def write(tmp_path, parts, name="best.pt"):
    model, optimizer, scheduler, _ = parts
    state = {"epoch": 3, "step": 30, "best_val_loss": 0.25, "best_epoch": 3}
    return save_checkpoint(tmp_path / name, model, optimizer, scheduler, state=state, meta=META)


def one_line_naming(exc: pytest.ExceptionInfo, path) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def test_round_trip_with_weights_only(tmp_path, parts):
    model, optimizer, scheduler, x = parts
    rng = torch.get_rng_state()
    path = write(tmp_path, parts)
    raw = torch.load(path, weights_only=True)  # nothing in the file needs code to load
    assert raw["format"] == FORMAT and raw["digest"].startswith("sha256:")
    assert set(raw) == {"format", "meta_json", "state_json", "model", "optimizer", "scheduler",
                        "rng", "digest"}

    ckpt = load_checkpoint(path)
    assert ckpt["meta"] == {**META, "model_config": model.config.to_dict()}
    assert ckpt["state"]["epoch"] == 3 and ckpt["state"]["best_val_loss"] == 0.25
    rebuilt = model_from_checkpoint(path)
    assert isinstance(rebuilt, simvp.SimVP) and not rebuilt.training
    model.eval()
    assert torch.equal(rebuilt(x), model(x))

    optimizer2 = torch.optim.Adam(rebuilt.parameters(), lr=1e-3)
    scheduler2 = cosine_with_warmup(optimizer2, total_steps=10, warmup_steps=2)
    optimizer2.load_state_dict(ckpt["optimizer"])  # after building the scheduler (it sets the lr)
    scheduler2.load_state_dict(ckpt["scheduler"])
    assert scheduler2.last_epoch == scheduler.last_epoch
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert torch.equal(ckpt["rng"]["torch"], rng)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_tampered_weight_is_refused(tmp_path, parts):
    path = write(tmp_path, parts)
    raw = torch.load(path, weights_only=True)
    name = next(iter(raw["model"]))
    raw["model"][name] = raw["model"][name].clone()
    raw["model"][name].view(-1)[0] += 1e-3
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "integrity check failed" in one_line_naming(exc, path)
    with pytest.raises(CheckpointError, match="integrity check failed"):
        model_from_checkpoint(path)


@pytest.mark.parametrize("where", ["model", "optimizer"])
def test_a_flipped_byte_on_disk_is_refused(tmp_path, parts, where):
    path = write(tmp_path, parts)
    model, optimizer = parts[0], parts[1]
    tensor = (model.state_dict()["encoder.blocks.0.conv.weight"] if where == "model"
              else optimizer.state_dict()["state"][0]["exp_avg"])
    data = bytearray(path.read_bytes())
    at = data.find(tensor.detach().numpy().tobytes())
    assert at > 0
    data[at + 5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    one_line_naming(exc, path)


def test_edited_metadata_is_refused(tmp_path, parts):
    path = write(tmp_path, parts)
    raw = torch.load(path, weights_only=True)
    meta = json.loads(raw["meta_json"])
    meta["normalization"]["mean"] = [0.0]
    raw["meta_json"] = json.dumps(meta, sort_keys=True)
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "integrity check failed" in one_line_naming(exc, path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign", "code"])
def test_unreadable_files_are_refused_with_one_line(tmp_path, parts, damage):
    path = write(tmp_path, parts)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(2048))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign":  # a plain state dict, not a simvp checkpoint
        torch.save(parts[0].state_dict(), path)
    else:  # an object that would need code to load: never executed
        torch.save({"format": FORMAT, "payload": torch.optim.Adam}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    message = one_line_naming(exc, path)
    expected = "not a simvp checkpoint" if damage == "foreign" else "not a readable checkpoint"
    assert expected in message


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, parts, monkeypatch):
    path = write(tmp_path, parts)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path, parts)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_meta_must_be_plain_data(tmp_path, parts):
    model = parts[0]
    with pytest.raises(TypeError, match="JSON-able"):
        save_checkpoint(tmp_path / "x.pt", model, meta={"bad": object()})
    with pytest.raises(ValueError, match="model_config"):
        save_checkpoint(tmp_path / "x.pt", model, meta={"model_config": {"hid_S": 99}})
    import numpy as np
    save_checkpoint(tmp_path / "x.pt", model, meta={"stats": np.array([1.5, 2.5]), "n": np.int64(3)})
    assert load_checkpoint(tmp_path / "x.pt")["meta"]["stats"] == [1.5, 2.5]


def test_require_meta(tmp_path, parts):
    ckpt = load_checkpoint(write(tmp_path, parts))
    assert require_meta(ckpt, "catalog_entry.grid", (32, 64), "grid") == [32, 64]
    with pytest.raises(CheckpointError) as exc:
        require_meta(ckpt, "catalog_entry.grid", (33, 49), "grid")
    assert str(exc.value) == f"{ckpt['path']}: checkpoint was trained on grid 32x64, the store has 33x49"
    with pytest.raises(CheckpointError, match="has no 'window.lead'"):
        require_meta(ckpt, "window.lead", 1)
