"""Run a `simcast` command in this process and SIGKILL it at a chosen point: a real, uncatchable kill at a
reproducible moment (a kill after a fixed delay would land anywhere on a shared machine).

    python -m tests.killing POINT N simcast-arguments...

POINT is one of
    step     after the Nth optimizer step (training)
    swap     just before the Nth atomic swap of a finished output into place
    swapped  just after the Nth exchange of a new output with the previous one, before the previous is dropped
"""

from __future__ import annotations

import os
import signal
import sys


def _kill_on(n: int):
    calls = 0

    def tick() -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            os.kill(os.getpid(), signal.SIGKILL)

    return tick


def main() -> None:
    point, n, *args = sys.argv[1:]
    tick = _kill_on(int(n))
    if point == "step":
        from torch.optim.optimizer import register_optimizer_step_post_hook

        register_optimizer_step_post_hook(lambda *_: tick())
    elif point in ("swap", "swapped"):
        from pipelines import outputs

        if point == "swap":
            swap = outputs._swap_into_place
            outputs._swap_into_place = lambda *a: (tick(), swap(*a))
        else:
            exchange = outputs._exchange
            outputs._exchange = lambda *a: (exchange(*a), tick())[0]
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    from pipelines.cli import app

    sys.argv = ["simcast", *args]
    app()


if __name__ == "__main__":
    main()
