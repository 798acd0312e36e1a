"""A killed ingest leaves the previous store intact, and rerunning it finishes the job (the swap by two renames,
where the file system cannot exchange two paths; tests/pipelines/test_kills_and_seeds.py kills every stage at
the one-step exchange)."""

import os
import subprocess
import sys
import textwrap

import pytest

from pipelines import synth

from pipelines.outputs import recover_interrupted

from ..conftest import REPO, entry, ingest
from .test_ingest_errors import _digest

KILLERS = {
    # killed once the new store is fully written beside the old one, before the swap
    "before_swap": """
        import xarray as xr
        real = xr.Dataset.to_zarr
        def to_zarr(self, *a, **k):
            real(self, *a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        xr.Dataset.to_zarr = to_zarr
    """,
    # on a file system that cannot exchange two paths in one step: killed between moving the old store aside
    # and renaming the new one into place
    "between_renames": """
        from pipelines import outputs
        outputs._exchange = lambda a, b: False
        real = os.rename
        def rename(src, dst):
            real(src, dst)
            if ".old-" in str(dst):
                os.kill(os.getpid(), signal.SIGKILL)
        os.rename = rename
    """,
}


@pytest.mark.parametrize("moment", KILLERS)
def test_kill_midway_then_rerun(tmp_path, moment):
    synth.write_weatherbench(tmp_path / "data/wb", "2010-01-01", "2010-01-06", layout=synth.WeatherLayout(files_per="day"))
    first = ingest(entry(), progress=False)
    before = _digest(first.store)
    (tmp_path / "data/wb/2m_temperature/2m_temperature_2010-01-06_5.625deg.nc").unlink()

    script = "import os, signal\n" + textwrap.dedent(KILLERS[moment]) + textwrap.dedent("""
        from tests.conftest import entry, ingest
        ingest(entry(), progress=False)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr

    siblings = [p.name for p in first.store.parent.iterdir() if p.name.startswith(".")]
    assert siblings, "the killed run should have left its temporary behind"
    recover_interrupted(first.store)
    assert _digest(first.store) == before  # the previous store, intact
    assert not [p for p in first.store.parent.iterdir() if p.name.startswith(".")]

    again = ingest(entry(), progress=False)
    assert not again.skipped and again.summary["time_steps"] == 5 * 24
    assert not [p for p in first.store.parent.iterdir() if p.name.startswith(".")]
