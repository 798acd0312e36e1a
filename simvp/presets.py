"""Released SimVP configurations (OpenSTL configs), keyed like the data catalog entries.

Each preset is plain data: keyword arguments for `SimVP`. `build` adds the translator and any
overrides, e.g. ``build("taxibj", translator="tau", drop_path=0.0)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .model import SimVP

PRESETS: dict[str, dict[str, Any]] = {
    # OpenSTL configs/weather/t2m_5_625/SimVP_*.py: 12 hourly frames -> 12, 32 x 64 grid.
    "weatherbench-t2m-5.625deg": dict(
        in_shape=(12, 1, 32, 64), hid_S=32, hid_T=256, N_S=2, N_T=8, drop_path=0.1,
        spatio_kernel_enc=3, spatio_kernel_dec=3,
    ),
    # OpenSTL configs/taxibj/simvp/SimVP_*.py and configs/taxibj/TAU.py: 4 -> 4, in/out flow.
    "taxibj": dict(
        in_shape=(4, 2, 32, 32), hid_S=32, hid_T=256, N_S=2, N_T=8, drop_path=0.1,
        spatio_kernel_enc=3, spatio_kernel_dec=3,
    ),
    # OpenSTL configs/mmnist/simvp/SimVP_*.py: 10 -> 10 frames of 64 x 64.
    "mmnist": dict(
        in_shape=(10, 1, 64, 64), hid_S=64, hid_T=512, N_S=4, N_T=8, drop_path=0.0,
        spatio_kernel_enc=3, spatio_kernel_dec=3,
    ),
}


def build(preset: str, translator: str = "gsta", **overrides: Any) -> nn.Module:
    """A fresh `SimVP` for a named preset; keyword overrides replace preset values."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return SimVP(**{**PRESETS[preset], "translator": translator, **overrides})
