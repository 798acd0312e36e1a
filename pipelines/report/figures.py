"""Writing a matplotlib figure (Agg canvas, no pyplot) as a PNG atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write the PNG beside its target, then rename: readers never see a half-written image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}.png"
    try:
        FigureCanvasAgg(fig)
        fig.savefig(tmp, format="png", dpi=fig.dpi, facecolor="white")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        fig.clear()
    return path
