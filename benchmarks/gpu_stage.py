"""Run one `simcast` command and, at its exit, write what it used to $GPU_CHECK_STAGE_REPORT (JSON): peak GPU memory
(when torch and CUDA were used), peak resident memory and the distributions whose modules it imported.

    GPU_CHECK_STAGE_REPORT=/tmp/r.json python benchmarks/gpu_stage.py train nybike --device cuda

benchmarks/gpu_check.py runs every stage of its chain through this. `evaluate` runs the stage that `simcast
evaluate` runs (pipelines.evaluate.run: the same scores, metrics.json and evaluation folder) and prints the metrics
path without the command's table: printing it imports pipelines.report, whose package imports its maps (cartopy,
matplotlib: 40 MB of wheels that do not fit the GPU machine's 64 MiB carry beside the rest).
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
from importlib.metadata import packages_distributions


def imported_distributions() -> list[str]:
    owners = packages_distributions()
    tops = {name.split(".")[0] for name in list(sys.modules)}
    return sorted({dist for top in tops for dist in owners.get(top, [])})


def write_report() -> None:
    report = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "peak_gpu_bytes": None, "distributions": imported_distributions()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        report["peak_gpu_bytes"] = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
    with open(os.environ["GPU_CHECK_STAGE_REPORT"], "w") as f:
        json.dump(report, f)


def evaluate(argv: list[str]) -> int:
    """`simcast evaluate DATASET --checkpoint C [--device D] [--lead-hours H]`, without the printed table."""
    import argparse

    from pipelines.errors import USER_ERRORS, exit_code, one_line
    from pipelines.evaluate import run
    from pipelines.specs import EvaluateSpec

    parser = argparse.ArgumentParser(prog="simcast evaluate")
    parser.add_argument("dataset")
    for option in ("--checkpoint", "--device", "--lead-hours"):
        parser.add_argument(option)
    options = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        paths = run(EvaluateSpec.from_catalog(options.pop("dataset"), **options))[2]
    except USER_ERRORS as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return exit_code(error)
    print(paths["metrics"])
    return 0


if __name__ == "__main__":
    atexit.register(write_report)
    if sys.argv[1:2] == ["evaluate"]:
        sys.exit(evaluate(sys.argv[2:]))
    from pipelines.cli import app

    sys.argv = ["simcast", *sys.argv[1:]]
    app()
