"""Commands that neither train nor predict start without torch (fast start, ~220 MB less memory)."""

import subprocess
import sys


def test_ingest_download_and_the_command_line_load_no_torch():
    code = ("import sys, pipelines.cli, pipelines.ingest, pipelines.download, pipelines.store, pipelines.specs\n"
            "from pipelines.specs import TrainSpec, IngestSpec\n"
            "from simvp.trainer import TrainConfig\n"
            "from simvp import SimVPConfig\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('simvp'))\n"
            "import simvp\n"
            "simvp.SimVP\n"
            "assert 'torch' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
