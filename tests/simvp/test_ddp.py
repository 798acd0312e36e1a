"""DistributedDataParallel training: two CPU processes with the gloo backend, launched by torchrun.

This file is also the training script the test launches (``python -m torch.distributed.run
--nproc_per_node 2 --standalone tests/simvp/test_ddp.py RUN_DIR``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TINY = dict(in_shape=(4, 1, 16, 16), hid_S=8, hid_T=16, N_S=2, N_T=2, drop_path=0.1)
SAMPLES, BATCH, EPOCHS = 16, 4, 2


class RandomWindows:
    """Tiny random data that remember which samples were asked for."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, 1, 16, 16, generator=g)
        self.y = 0.5 * self.x.flip(1) + 0.1 * torch.randn(n, 4, 1, 16, 16, generator=g)
        self.seen: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, index):
        self.seen.append(index.tolist())
        return self.x[index], self.y[index]


class Killed(Exception):
    pass


def main(run_dir: str) -> None:
    import simvp
    from simvp.trainer import TrainConfig, train

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=5e-3, seed=0, deterministic=True,
                         device="cpu", log_every=1)
    meta = {"catalog_entry": {"name": "random"}}

    def run(folder, resume=False, on_epoch_end=None):
        torch.manual_seed(rank)  # different initial weights on each rank: DDP must broadcast
        model, data = simvp.SimVP(**TINY), RandomWindows(SAMPLES, seed=1)
        result = train(model, data, RandomWindows(6, seed=2), config, Path(run_dir) / folder,
                       meta=meta, resume=resume, progress=folder == "whole",
                       on_epoch_end=on_epoch_end)
        return model, data, result

    model, data, result = run("whole")
    torch.save({"state": model.state_dict(), "history": result.history, "seen": data.seen,
                "best_epoch": result.best_epoch}, Path(run_dir) / "whole" / f"rank{rank}.pt")

    def kill(record):  # both processes stop after epoch 1 (its checkpoint is written)
        raise Killed

    try:
        run("resumed", on_epoch_end=kill)
    except Killed:
        pass
    model, _, _ = run("resumed", resume=True)
    torch.save({"state": model.state_dict()}, Path(run_dir) / "resumed" / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_gloo_processes_train_one_model_and_resume(tmp_path):
    from simvp.checkpoint import load_checkpoint
    from simvp.trainer import epoch_permutation

    run_dir = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         str(Path(__file__).resolve()), str(run_dir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: a hang is ended with all its workers
    )
    try:
        stdout, stderr = launcher.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        stdout, stderr = launcher.communicate()
        pytest.fail(f"torchrun did not finish in 240 s: {stderr[-3000:]}")
    assert launcher.returncode == 0, stdout[-3000:] + stderr[-3000:]

    whole = run_dir / "whole"
    ranks = [torch.load(whole / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    resumed = [torch.load(run_dir / "resumed" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    last = load_checkpoint(whole / "last.pt")
    assert (whole / "best.pt").is_file() and (whole / "metrics.csv").is_file()
    assert sorted(p.name for p in whole.glob("*.pt")) == ["best.pt", "last.pt", "rank0.pt", "rank1.pt"]
    for name, tensor in ranks[0]["state"].items():  # parameters and buffers agree across ranks
        assert torch.equal(ranks[1]["state"][name], tensor), name
        assert torch.equal(last["model"][name], tensor), name
        # killed after epoch 1 and resumed: the same weights as the uninterrupted run
        assert torch.equal(resumed[0]["state"][name], tensor), name
        assert torch.equal(resumed[1]["state"][name], tensor), name
    untimed = [[{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")}
                for r in rank["history"]] for rank in ranks]
    assert untimed[0] == untimed[1]  # losses were all-reduced
    assert ranks[0]["best_epoch"] == ranks[1]["best_epoch"] == last["state"]["best_epoch"]
    assert last["state"]["world_size"] == 2 and last["state"]["step"] == EPOCHS * 2

    # every step, the two ranks took the two halves of one global batch of the epoch's shuffle
    steps = SAMPLES // (2 * BATCH)
    for epoch in range(EPOCHS):
        order = epoch_permutation(SAMPLES, 0, epoch).tolist()
        for step in range(steps):
            got = [rank["seen"][epoch * steps + step] for rank in ranks]
            assert got[0] + got[1] == order[step * 2 * BATCH:(step + 1) * 2 * BATCH]
    assert "epoch 2/2:" in stderr and "resuming" not in stderr


if __name__ == "__main__":
    main(sys.argv[1])
