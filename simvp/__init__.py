"""SimVP spatiotemporal prediction models (torch only).

    from simvp import SimVP, SimVPConfig
    config = SimVPConfig(in_shape=(12, 1, 32, 64), hid_S=32, N_S=2, N_T=8, translator="tau")
    model = SimVP(config)
    same = SimVP(SimVPConfig.from_dict(config.to_dict()))   # rebuilt from plain data

Training: `simvp.trainer`; checkpoints: `simvp.checkpoint`.
"""

from .model import SimVP, SimVPConfig
from .translators import TRANSLATORS, differential_divergence_loss

__all__ = ["SimVP", "SimVPConfig", "TRANSLATORS", "differential_divergence_loss"]
