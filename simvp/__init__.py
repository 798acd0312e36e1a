"""SimVP spatiotemporal prediction models (torch only).

    from simvp import SimVP, SimVPConfig
    config = SimVPConfig(in_shape=(12, 1, 32, 64), hid_S=32, N_S=2, N_T=8, translator="tau")
    model = SimVP(config)
    same = SimVP(SimVPConfig.from_dict(config.to_dict()))   # rebuilt from plain data

Training: `simvp.trainer`; checkpoints: `simvp.checkpoint`. The names below load their module on first use, so
that the plain-data parts (`simvp.config`, `simvp.errors`, `simvp.trainer.TrainConfig`) import without torch.
"""

import importlib

_HOMES = {"SimVP": ".model", "SimVPConfig": ".config", "TRANSLATORS": ".translators",
          "differential_divergence_loss": ".translators"}

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
