"""Plain-data configuration of simvp, importable without torch: the model's `SimVPConfig` and the names of the
translators and learning-rate schedules (the modules that implement them check they match)."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

TRANSLATOR_NAMES = ("gsta", "incepu", "tau")
SCHEDULES = ("cosine", "onecycle", "constant")


@dataclass(frozen=True)
class SimVPConfig:
    """The arguments of a SimVP, mirroring OpenSTL's ``SimVP_Model``.

    in_shape: ``(T, C, H, W)`` of the input. H and W only document the training grid: any grid
        works, it is padded to a multiple of the downsampling factor inside and cropped back.
    hid_S, N_S: width and number of ConvSC blocks of the frame encoder/decoder.
    hid_T, N_T: width and depth of the translator.
    translator: a key of `TRANSLATORS`.
    out_frames: frames predicted per call (None: T). When it differs from T, learned 1x1
        convolutions map the stacked latent and the skip from T to `out_frames` frames.
    mlp_ratio, drop, drop_path: MetaBlock settings (gsta, tau); unused by incepu.
    spatio_kernel_enc, spatio_kernel_dec: kernel size of the encoder/decoder convolutions.
    residual: add an observed frame to every output frame, so the network predicts changes
        (not in the released SimVP; off by default).
    residual_lag: which frame `residual` adds: None for the last input frame (persistence), or
        a period L for the frame at the same phase of the last L input frames, e.g. 24 for the
        same hour of the last observed day in hourly data: L steps before targets 1..L, 2L steps
        before targets L+1..2L, and so on. Needs ``L <= T`` so that it is always an input.
    anchor_trend: with `residual_lag` L, add to each output frame's anchor a learned fraction (one per
        output frame, starting at zero) of the change over the last period, ``x[-1] - x[-1 - L]``: the
        same hours a day earlier, moved by how much today differs from yesterday so far (needs T > L).
    """

    in_shape: tuple[int, int, int, int]
    hid_S: int = 16
    hid_T: int = 256
    N_S: int = 4
    N_T: int = 4
    translator: str = "gsta"
    out_frames: int | None = None
    mlp_ratio: float = 8.0
    drop: float = 0.0
    drop_path: float = 0.0
    spatio_kernel_enc: int = 3
    spatio_kernel_dec: int = 3
    residual: bool = False
    residual_lag: int | None = None
    anchor_trend: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        in_shape = tuple(int(v) for v in self.in_shape)
        if len(in_shape) != 4 or min(in_shape) < 1:
            raise ValueError(f"in_shape must be (T, C, H, W) of positive sizes, got {self.in_shape!r}")
        translator = str(self.translator).lower()
        if translator not in TRANSLATOR_NAMES:
            raise ValueError(f"unknown translator {self.translator!r}; expected one of {sorted(TRANSLATOR_NAMES)}")
        out_frames = None if self.out_frames is None else int(self.out_frames)
        if out_frames is not None and out_frames < 1:
            raise ValueError(f"out_frames must be >= 1, got {self.out_frames!r}")
        lag = None if self.residual_lag is None else int(self.residual_lag)
        if lag is not None:
            if not self.residual:
                raise ValueError("residual_lag is set but residual is off: set residual=True to use it")
            if not 1 <= lag <= in_shape[0]:
                raise ValueError(f"residual_lag {lag} must lie between 1 and the input frames ({in_shape[0]}) "
                                 "so that the lagged frame is always an input")
        if self.anchor_trend and (lag is None or lag >= in_shape[0]):
            raise ValueError(f"anchor_trend needs residual_lag L with L < the input frames ({in_shape[0]}), "
                             f"got {lag}: the change x[-1] - x[-1 - L] must be an input")
        for name, value in (("in_shape", in_shape), ("translator", translator),
                            ("out_frames", out_frames), ("residual_lag", lag)):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (in_shape as a list, out_frames resolved): what checkpoints store."""
        data = dataclasses.asdict(self)
        return {**data, "in_shape": list(self.in_shape), "out_frames": self.out_frames or self.in_shape[0]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SimVPConfig":
        """The config of `to_dict` (or of a checkpoint's ``meta["model_config"]``)."""
        return cls(**data)


# integer fields and their smallest value (a config is often user input: a catalog, a run's spec.json)
_SIZES = {"hid_S": 1, "hid_T": 1, "N_S": 1, "N_T": 1, "spatio_kernel_enc": 1, "spatio_kernel_dec": 1}


def _check_types(config: SimVPConfig) -> None:
    """ValueError naming the field for a value of the wrong type or out of range (`hid_S must be ...`)."""
    def whole(name, value, low):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    for name, low in _SIZES.items():
        whole(name, getattr(config, name), low)
    for name in ("out_frames", "residual_lag"):
        if getattr(config, name) is not None:
            whole(name, getattr(config, name), 1)
    if not isinstance(config.in_shape, (tuple, list)) or len(config.in_shape) != 4:
        raise ValueError(f"in_shape must be (T, C, H, W) of positive sizes, got {config.in_shape!r}")
    for v in config.in_shape:
        whole("in_shape", v, 1)
    ratio = config.mlp_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1024:
        raise ValueError(f"mlp_ratio must be a number in (0, 1024], got {ratio!r}")
    for name in ("drop", "drop_path"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < 1:
            raise ValueError(f"{name} must be a number in [0, 1), got {v!r}")
    for name in ("residual", "anchor_trend"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name} must be true or false, got {getattr(config, name)!r}")
    if not isinstance(config.translator, str):
        raise ValueError(f"translator must be one of {sorted(TRANSLATOR_NAMES)}, got {config.translator!r}")
