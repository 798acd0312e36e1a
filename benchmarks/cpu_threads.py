"""CPU thread settings: PyTorch's default OpenMP waiting (threads spin after each parallel region) against
OMP_WAIT_POLICY=PASSIVE (what simcast sets unless the environment says otherwise), on a training step of the
ERA5 sample's default model.

    python benchmarks/cpu_threads.py --pairs 5 --steps 10            # as the machine is
    python benchmarks/cpu_threads.py --pairs 5 --steps 10 --load 1   # with one other busy process (a shared machine)

Each run is its own process (the policy is read when torch loads). Runs go round the variants in turn so that all
see the same machine load; the result is each round's ratio of wall times to the first variant's, and the median, with the load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
import torch
sys.path.insert(0, sys.argv[1])
import simvp
threads, steps = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
# the era5-uk-t2m catalog default: 24 h in (t2m + 2 hour-of-day channels) -> 12 h out on 33 x 49
model = simvp.SimVP(in_shape=(24, 3, 33, 49), out_frames=12, hid_S=16, hid_T=64, N_S=2, N_T=2, mlp_ratio=4.0,
                    drop_path=0.1, residual=True, residual_lag=24)
opt = torch.optim.Adam(model.parameters(), 1e-3)
x, y = torch.randn(16, 24, 3, 33, 49), torch.randn(16, 12, 3, 33, 49)
def step():
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
step()  # warm-up
t0 = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


VARIANTS = {"default": {}, "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "spin10k": {"GOMP_SPINCOUNT": "10000"}}  # libgomp spins 300000 rounds by default, PASSIVE none


def run(variant: str, threads: int, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env.update(VARIANTS[variant])
    out = subprocess.run([sys.executable, "-c", WORKER, str(REPO), str(threads), str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--variants", type=lambda t: t.split(","), default=list(VARIANTS),
                   help=f"comma-separated, the first is the reference: {', '.join(VARIANTS)}")
    p.add_argument("--load", type=int, default=0, help="busy processes to run beside (a shared machine)")
    args = p.parse_args()
    import torch

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        measure(args, torch.__version__)
    finally:
        for b in busy:
            b.kill()


def measure(args, torch_version: str) -> None:
    load_before = os.getloadavg()
    times = {v: [] for v in args.variants}
    for _ in range(args.pairs):  # interleaved: each round runs every variant once
        for v in args.variants:
            times[v].append(run(v, args.threads, args.steps))
        print("   ".join(f"{v} {times[v][-1]:6.2f} s" for v in args.variants), flush=True)
    load_after = os.getloadavg()
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
          f"{torch_version}; {args.threads} threads, {args.steps} training steps at batch 16 per run, "
          f"{args.load} busy processes beside")
    print(f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    base = args.variants[0]
    for v in args.variants:
        ratios = [a / b for a, b in zip(times[base], times[v])]
        print(f"{v}: median {statistics.median(times[v]):.2f} s; {base}/{v} per round: median "
              f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
