"""What the bare GPU machine has, and what benchmarks/gpu_wheels.txt carries to it."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires

from ..conftest import REPO

WHEEL_LIST = REPO / "benchmarks" / "gpu_wheels.txt"
# what the GPU machine comes with (the issue): these and everything they require
MACHINE = ("torch", "numpy", "xarray", "h5py", "pandas", "scipy", "scikit-image")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def listed() -> dict[str, str]:
    """{canonical name: version} of the wheel list."""
    pins = [line.split("==") for line in WHEEL_LIST.read_text().splitlines() if line and not line.startswith("#")]
    return {canonical(name): version for name, version in pins}


def on_the_machine() -> set[str]:
    """The machine's packages and their requirements, as far as this environment knows them."""
    found, todo = set(), list(MACHINE)
    while todo:
        name = canonical(todo.pop())
        if name in found:
            continue
        found.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0] for r in needs if "extra ==" not in r]
    return found
