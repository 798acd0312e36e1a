"""Checkpoints: written atomically, loaded without running code from the file, verified by digest.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings and plain containers,
so ``torch.load(path, weights_only=True)`` reads it::

    {
      "format":    "simvp-checkpoint/1",
      "meta_json": str,   # JSON: the caller's metadata + "model_config" (SimVPConfig.to_dict()) [+ "train_config"]
      "state_json": str,  # JSON: training progress (epoch, step, best_val_loss, history, ...)
      "model":     {name: tensor},          # state dict of the bare model (no DDP/compile prefixes), CPU
      "optimizer": optimizer.state_dict() | None,
      "scheduler": scheduler.state_dict() | None,
      "rng":       {"torch": ByteTensor, "cuda": [ByteTensor, ...], "python": tuple},
      "digest":    "sha256:<hex>",  # over all of the above (tensors by dtype, shape and bytes)
    }

`load_checkpoint` recomputes the digest and refuses a file that was changed (a weight, the metadata,
the optimizer state), truncated or is not a checkpoint, with one line naming the file
(`CheckpointError`). The digest detects accidents and edits; it is not a signature (whoever can
write the file can recompute it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import torch
from torch import nn

from .errors import CheckpointError
from .model import SimVP, SimVPConfig

FORMAT = "simvp-checkpoint/1"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


# ---------------------------------------------------------------------------------------------
# atomic writes


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write `path` through a temporary file beside it: write, flush, fsync, rename.

    A crash or an exception in `write` leaves the previous file (if any) untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# ---------------------------------------------------------------------------------------------
# digest, JSON and RNG helpers


def _feed(h, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _feed_value(h, value: Any) -> None:
    """Hash plain data canonically: dicts in sorted key order, tensors by dtype, shape and bytes."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        _feed(h, f"T|{str(tensor.dtype)}|{tuple(tensor.shape)}".encode())
        _feed(h, tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        _feed(h, f"D|{len(items)}".encode())
        for key, item in items:
            _feed_value(h, key)
            _feed_value(h, item)
    elif isinstance(value, (list, tuple)):
        _feed(h, f"L|{len(value)}".encode())
        for item in value:
            _feed_value(h, item)
    elif isinstance(value, str):
        _feed(h, b"S|" + value.encode("utf-8"))
    elif value is None or isinstance(value, (bool, int, float)):
        _feed(h, f"{type(value).__name__}|{value!r}".encode())
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}")


def digest(payload: Mapping[str, Any]) -> str:
    """sha256 over every entry of a checkpoint payload except "digest" itself: the format tag,
    both JSON strings, the model tensors (name, dtype, shape, bytes), optimizer, scheduler, RNG."""
    h = hashlib.sha256()
    _feed_value(h, {k: v for k, v in payload.items() if k != "digest"})
    return "sha256:" + h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-able")


def to_json(data: Mapping[str, Any], what: str) -> str:
    """Canonical JSON (sorted keys) of plain data; numpy/torch values become lists or numbers."""
    try:
        return json.dumps(data, sort_keys=True, default=_jsonable)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint {what} must be JSON-able plain data: {exc}") from None


def rng_state() -> dict[str, Any]:
    """The torch (CPU and every CUDA device) and Python RNG states of this process."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    state["cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if state.get("python") is not None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


# ---------------------------------------------------------------------------------------------
# save / load


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    state: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; returns the path.

    `meta` (JSON-able) is stored with ``meta["model_config"] = model.config.to_dict()`` added when
    the model is a SimVP; a caller-given "model_config" must equal it. `state` (JSON-able) is the
    training progress. The current RNG states are stored too.
    """
    bare = unwrap(model)
    meta = dict(meta or {})
    config = model_config(bare)
    if config is not None:
        if "model_config" in meta and json.loads(to_json(meta["model_config"], "meta")) != config:
            raise ValueError("meta['model_config'] differs from the model's own config")
        meta["model_config"] = config
    meta_json = to_json(meta, "meta")
    state_json = to_json(dict(state or {}), "state")
    weights = {name: t.detach().to("cpu").contiguous() for name, t in bare.state_dict().items()}
    payload = {
        "format": FORMAT,
        "meta_json": meta_json,
        "state_json": state_json,
        "model": weights,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
    }
    payload["digest"] = digest(payload)
    return atomic_write(path, lambda f: torch.save(payload, f))


def model_config(model: nn.Module) -> dict[str, Any] | None:
    """``model.config.to_dict()`` as stored in checkpoints (JSON-normal), or None for a model
    without a `SimVPConfig`."""
    config = getattr(unwrap(model), "config", None)
    return json.loads(to_json(config.to_dict(), "model config")) if isinstance(config, SimVPConfig) else None


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0].strip() if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _load_problem(exc: BaseException) -> str:
    """What went wrong in ``torch.load(weights_only=True)``, in a few words."""
    text = str(exc)
    code = re.search(r"GLOBAL ([\w.]+)", text)
    if code:
        return (f"it refers to code ({code.group(1)}), which is never loaded; "
                f"a simvp checkpoint holds only tensors and plain data")
    if "zip archive" in text or "PytorchStreamReader" in text:
        return "truncated or corrupt (incomplete zip archive)"
    if isinstance(exc, EOFError) or "Ran out of input" in text:
        return "empty or truncated file"
    if isinstance(exc, pickle.UnpicklingError):
        return "not a torch checkpoint (unreadable data)"
    return f"not a torch checkpoint (the reader failed: {_one_line(exc)})"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint (``weights_only=True``: nothing in the file is executed).

    Returns ``{"path", "format", "meta", "state", "model", "optimizer", "scheduler", "rng",
    "digest"}`` with "meta" and "state" parsed from their JSON. Raises `CheckpointError` with one
    line naming the file when it is missing, unreadable, truncated, not a checkpoint or modified.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, objects that need code to load
        raise CheckpointError(f"{path}: not a readable checkpoint: {_load_problem(exc)}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path}: not a simvp checkpoint (format {found!r}, expected {FORMAT!r})")
    for key, kind in (("meta_json", str), ("state_json", str), ("model", dict), ("digest", str)):
        if not isinstance(raw.get(key), kind):
            raise CheckpointError(f"{path}: damaged checkpoint: {key!r} missing or not a {kind.__name__}")
    try:
        actual = digest(raw)
    except TypeError as exc:
        raise CheckpointError(f"{path}: damaged checkpoint: {_one_line(exc)}") from None
    if actual != raw["digest"]:
        raise CheckpointError(
            f"{path}: integrity check failed: the contents (weights, metadata or training state) "
            f"do not match the stored digest (file modified or corrupt)"
        )
    try:
        meta, state = json.loads(raw["meta_json"]), json.loads(raw["state_json"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: damaged checkpoint metadata: {_one_line(exc)}") from None
    return {
        "path": str(path),
        "format": raw["format"],
        "meta": meta,
        "state": state,
        "model": raw["model"],
        "optimizer": raw.get("optimizer"),
        "scheduler": raw.get("scheduler"),
        "rng": raw.get("rng"),
        "digest": raw["digest"],
    }


def model_from_checkpoint(checkpoint: str | os.PathLike | Mapping[str, Any],
                          map_location: Any = "cpu") -> nn.Module:
    """``SimVP(SimVPConfig.from_dict(meta["model_config"]))`` with the checkpoint's weights
    (strict), in eval mode.

    `checkpoint` is a path or a dict returned by `load_checkpoint`.
    """
    ckpt = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(checkpoint, map_location)
    where = ckpt.get("path", "<checkpoint>")
    config = ckpt["meta"].get("model_config")
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{where}: checkpoint metadata has no model_config to rebuild the model")
    try:
        model = SimVP(SimVPConfig.from_dict(config))
        model.load_state_dict(ckpt["model"], strict=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: cannot rebuild the model: {_one_line(exc)}") from None
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval()


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return "x".join(str(v) for v in value)
    return json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value


def require_meta(ckpt: Mapping[str, Any], key: str, expected: Any, what: str | None = None,
                 against: str = "the store") -> Any:
    """Check ``ckpt["meta"][key] == expected`` (`key` may be dotted: "window.input").

    Raises e.g. ``CheckpointError("runs/x/best.pt: checkpoint was trained on grid 32x64, the store
    has 33x49")``. Tuples compare equal to lists. Returns the stored value.
    """
    where = ckpt.get("path", "<checkpoint>")
    value: Any = ckpt["meta"]
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise CheckpointError(f"{where}: checkpoint metadata has no {key!r} "
                                  f"(needed to check {what or key} against {against})")
        value = value[part]
    normal = json.loads(json.dumps(expected, default=_jsonable))
    if value != normal:
        raise CheckpointError(f"{where}: checkpoint was trained on {what or key} {_describe(value)}, "
                              f"{against} has {_describe(normal)}")
    return value
