"""SimVP spatiotemporal prediction models (torch only).

    import simvp
    model = simvp.build("taxibj", translator="gsta")    # a released configuration
    model = simvp.SimVP(**model.config)                  # rebuild from plain data
"""

from .model import SimVP
from .presets import PRESETS, build
from .translators import TRANSLATORS, differential_divergence_loss

__all__ = ["SimVP", "PRESETS", "build", "TRANSLATORS", "differential_divergence_loss"]
