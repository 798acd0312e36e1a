"""benchmarks/gpu_wheels.sh carries what the simcast commands import beyond the GPU machine's own packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

from ..conftest import REPO
from .wheels import canonical, listed, on_the_machine


def test_the_list_pins_the_versions_this_checkout_tests():
    pins = listed()
    assert {"zarr", "numcodecs", "dask", "distributed", "netcdf4", "cftime", "typer", "rich", "tqdm",
            "pydantic"} <= set(pins)
    assert {name: version(name) for name in pins} == pins
    assert not set(pins) & {"torch", "numpy", "xarray", "h5py", "pandas", "scipy", "prefect", "cartopy"}


def test_the_script_downloads_the_list_for_cpython_3_12_and_builds_simcast():
    printed = subprocess.run(["bash", "benchmarks/gpu_wheels.sh", "--print"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.splitlines()
    download, own = printed
    for flag in ("--no-deps", "--only-binary=:all:", "--python-version 3.12", "--implementation cp",
                 "--platform manylinux_2_28_x86_64", "--platform manylinux2014_x86_64", "--platform any", "-d .whl"):
        assert flag in download
    pins = {canonical(arg.split("==")[0]): arg.split("==")[1] for arg in download.split() if "==" in arg}
    assert pins == listed()
    assert "pip wheel" in own and "--no-deps" in own and own.split()[-1] == "."


def test_what_ingest_and_the_model_stages_import_is_carried_or_on_the_machine(tmp_path):
    """A real `simcast ingest` (it imports dask.distributed on the way), and the modules of train, evaluate and
    forecast: every distribution they load is in the list, on the machine, or simcast itself."""
    report = tmp_path / "stage.json"
    env = {**os.environ, "GPU_CHECK_STAGE_REPORT": str(report), "OMP_NUM_THREADS": "1",
           "SIMCAST_STORE_ROOT": str(tmp_path / "stores")}
    subprocess.run([sys.executable, "benchmarks/gpu_stage.py", "ingest", "nybike"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    loaded = set(json.loads(report.read_text())["distributions"])
    probe = ("import sys, json, importlib.metadata as m; import pipelines.cli, pipelines.train, pipelines.evaluate, "
             "pipelines.forecast, pipelines.windows, pipelines.streaming, rich.console, rich.table; "
             "owners = m.packages_distributions(); "
             "print(json.dumps(sorted({d for n in list(sys.modules) for d in owners.get(n.split('.')[0], [])})))")
    imported = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                              check=True).stdout
    loaded |= set(json.loads(imported))
    assert {"zarr", "distributed", "netCDF4", "torch"} <= loaded
    missing = {canonical(d) for d in loaded} - set(listed()) - on_the_machine() - {"simcast"}
    assert not missing
