"""The GPU check of issue 21: everything simcast promises on a GPU, measured in one run, into one results file.

    bash benchmarks/gpu_check.sh                        # on the GPU machine (installs .whl/ first), CUDA
    python benchmarks/gpu_check.py --device cpu --tiny  # the CPU dry run of the tests: same code, tiny sizes

Sections, each written to <out>/gpu_check.json as soon as it ends (a killed run keeps what it had), the output of
every command it ran in <out>/gpu_check.log, and a summary of the goals in <out>/gpu_check.md:

  environment  GPU, driver, torch / CUDA / cuDNN, package versions
  chain        `simcast ingest`, `train` (bf16 on CUDA), `evaluate`, `forecast` of era5-uk-t2m and nybike on the
               device: exit codes, validation loss and scores, samples/s, peak memory; fp32 runs on the CPU with
               other seeds give the seed spread the device runs must land in
  throughput   benchmarks/model_throughput.py per preset and batch: eager fp32 (no TF32), TF32, bf16 +
               channels_last, bf16 + channels_last + compile (default, then reduce-overhead)
  openstl_fps  input sequences/s at batch 100 (fp32 and the optimized path) next to OpenSTL's published V100 FPS
  input_path   the trainer's input path alone (streamed windows of a synthetic year at 1.40625 deg, copied to the
               device) against the training rate of a SimVP on the same windows
  torchrun     `torchrun --nproc_per_node 1 -m pipelines.cli train` as the README documents it
  goals        the issue's goals, each with its value and whether it is met (None: not measured)

Every section has a time budget (--budget SECTION=SECONDS); what does not fit is recorded as skipped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "benchmarks"))

SAMPLES = ("era5-uk-t2m", "nybike")
PRESETS = ("weatherbench-t2m-5.625deg", "taxibj")
OPENSTL_V100_FPS = {"weatherbench-t2m-5.625deg": 504, "taxibj": 1217}  # OpenSTL's published SimVP gSTA FPS
GOALS = {"training_speedup": 3.0, "inference_speedup": 5.0, "bf16_rel_err": 1e-2, "fps_over_openstl": 10.0,
         "input_over_training": 2.0}


@dataclass(frozen=True)
class Sizes:
    """How much of each section to run: the GPU defaults, or `tiny` for the CPU dry run."""

    epochs: int = 2
    max_steps_per_epoch: int | None = None
    train_options: dict = field(default_factory=dict)     # per sample: more `simcast train` options
    evaluate_options: dict = field(default_factory=dict)  # per sample: more `simcast evaluate` options
    device_seeds: tuple[int, ...] = (1, 2)
    reference_seeds: tuple[int, ...] = (3, 4)      # fp32 on the CPU: the seed spread
    presets: tuple[str, ...] = PRESETS
    batch_sizes: tuple[int, ...] = (128, 16)
    phases: tuple[str, ...] = ("infer", "train")
    fast_phases: tuple[str, ...] = ("infer", "train")  # of the bf16 / optimized paths
    fps_batch: int = 100
    steps: int = 10
    repeats: int = 3
    warmup: int = 3
    compiled: bool = True                          # the compiled paths (minutes of compiling on a CPU)
    translators: tuple[str, ...] = ("gsta",)
    window_days: int = 365
    window_batch: int = 16
    window_batches: int = 50
    window_model: dict = field(default_factory=dict)  # overrides of the weatherbench preset's model
    torchrun_steps: int | None = 20
    budgets: dict = field(default_factory=lambda: dict(
        environment=10, chain=160, throughput=160, openstl_fps=40, input_path=70, torchrun=30))


# The CPU dry run: 6 h out and every 6th window of the ERA5 sample, every 4th of NYBike, two small steps an epoch; on the
# CPU the fp32 "device" runs are reference runs too (seed 1 is trained once); the throughput of TaxiBJ at batch 1
# without compiling (minutes on a CPU), bf16 inference only (emulated on CPUs without bf16: slow).
TINY = Sizes(epochs=1, max_steps_per_epoch=2,
             train_options={"era5-uk-t2m": ["--output", "6", "--stride", "6", "--batch-size", "2"],
                            "nybike": ["--stride", "4", "--batch-size", "4"]},
             evaluate_options={"era5-uk-t2m": ["--lead-hours", "6"]},
             device_seeds=(1,), reference_seeds=(1, 2), presets=("taxibj",), batch_sizes=(1,), fast_phases=("infer",),
             fps_batch=2, steps=1, repeats=1, warmup=0, compiled=False, window_days=12, window_batch=4,
             window_batches=3, window_model=dict(hid_S=4, hid_T=8, N_S=2, N_T=2), torchrun_steps=2,
             budgets=dict(environment=60, chain=300, throughput=120, openstl_fps=120, input_path=120, torchrun=120))


# ---- running commands --------------------------------------------------------------------------------------


class Check:
    """The run: its device, sizes, work folder, log and results; `left()` is the time left to a section."""

    def __init__(self, device: str, sizes: Sizes, out: Path, work: Path):
        self.device, self.sizes, self.out, self.work = device, sizes, out, work
        self.results: dict = {"device": device, "sizes": "tiny" if sizes == TINY else "gpu"}
        self.log = (out / "gpu_check.log").open("a")
        self.deadline = 0.0
        self.counter = itertools.count()
        self.preparing: dict[str, subprocess.Popen] = {}  # background work a later section waits for

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def environment(self) -> dict:
        """The environment of every command: the work folder's roots, this checkout's code first."""
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, "SIMCAST_DATA_ROOT": str(self.work / "data"),
                "SIMCAST_STORE_ROOT": str(self.work / "stores"), "SIMCAST_RUNS_ROOT": str(self.work / "runs"),
                "SIMCAST_OUTPUT_ROOT": str(self.work / "outputs")}

    def run(self, command: list[str], timeout: float | None = None, env: dict | None = None) -> dict:
        """Run a command in the checkout; its exit code, seconds and standard output (stderr goes to the log)."""
        timeout = self.left() if timeout is None else min(timeout, self.left())
        if timeout < 1:
            return {"skipped": "the section's time budget is spent", "command": " ".join(command)}
        self.note(f"$ {' '.join(command)}")
        t0 = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=REPO, env={**self.environment(), **(env or {})},
                                  stdout=subprocess.PIPE, stderr=self.log, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.log.write(e.stdout or "")
            return {"exit_code": None, "error": f"timeout after {timeout:.0f} s", "seconds": round(timeout, 1)}
        self.log.write(done.stdout)
        self.log.flush()
        return {"exit_code": done.returncode, "seconds": round(time.perf_counter() - t0, 2), "stdout": done.stdout}

    def simcast(self, *args: str, threads: int | None = None) -> dict:
        """One `simcast` command through benchmarks/gpu_stage.py: also its peak memory and imported packages."""
        report = self.work / f"stage-{next(self.counter)}.json"
        env = {"GPU_CHECK_STAGE_REPORT": str(report), **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        result = self.run([sys.executable, str(REPO / "benchmarks/gpu_stage.py"), *args], env=env)
        if report.exists():
            result.update(json.loads(report.read_text()))
        return result

    def write(self) -> None:
        path = self.out / "gpu_check.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.results, indent=2, default=str))
        path.with_suffix(".tmp").replace(path)


def last_line(result: dict) -> str | None:
    lines = (result.get("stdout") or "").strip().splitlines()
    return lines[-1] if lines else None


def ok(result: dict) -> bool:
    return result.get("exit_code") == 0


# ---- sections -----------------------------------------------------------------------------------------------


def environment(check: Check) -> dict:
    import torch

    found = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
             "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
             "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                     capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count())
    if shutil.which("nvidia-smi"):
        smi = check.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 30)
        found["nvidia_smi"] = (smi.get("stdout") or "").strip() or smi
    else:
        found["nvidia_smi"] = "not found"
    from importlib.metadata import version

    found["packages"] = {name: version(name) for name in ("numpy", "xarray", "zarr", "dask", "netCDF4", "h5py",
                                                           "pandas", "pydantic", "typer")}
    return found


def train_args(check: Check, dataset: str, device: str, seed: int) -> list[str]:
    sizes = check.sizes
    run_dir = check.work / "runs" / f"{dataset}-{device}-seed{seed}"  # runs beside each other: one folder each
    args = ["train", dataset, "--device", device, "--seed", str(seed), "--epochs", str(sizes.epochs),
            "--out", str(run_dir)]
    if sizes.max_steps_per_epoch:
        args += ["--max-steps-per-epoch", str(sizes.max_steps_per_epoch)]
    return args + sizes.train_options.get(dataset, [])


def trained(result: dict) -> dict:
    """What a `simcast train` reports: the best checkpoint, its validation loss, the last epoch's samples/s."""
    best = last_line(result)
    if not ok(result) or not best:
        return result
    epochs = json.loads((Path(best).parent / "history.json").read_text())
    result.update(checkpoint=best, best_val_loss=min(e["val_loss"] for e in epochs),
                  samples_per_s=round(epochs[-1]["samples_per_s"], 1), epochs=len(epochs))
    return result


def scores(result: dict) -> dict:
    """The model's main score (and each baseline's) from the metrics.json an evaluate wrote."""
    path = last_line(result)
    if not ok(result) or not path:
        return result
    metrics = json.loads(Path(path).read_text())
    info_path = Path(path).parent / "evaluation.json"
    main = json.loads(info_path.read_text()).get("main_metric") if info_path.exists() else None
    result["main_metric"] = main = main or "rmse"
    result["scores"] = {name: m.get(main, m.get("rmse")) for name, m in metrics.items()
                        if isinstance(m, dict) and (main in m or "rmse" in m)}
    return result


def within_spread(values: list[float], reference: list[float]) -> bool | None:
    """Every value within the reference runs' range widened by that range on both sides."""
    if not values or len(reference) < 2:
        return None
    lo, hi = min(reference), max(reference)
    return all(lo - (hi - lo) <= v <= hi + (hi - lo) for v in values)


def chain(check: Check) -> dict:
    """Both samples on the device; the CPU reference runs go on beside them (on the GPU machine's spare cores)."""
    found = {dataset: {"ingest": check.simcast("ingest", dataset)} for dataset in SAMPLES}
    on_cpu = check.device == "cpu"  # then a device run is a reference run: not trained twice
    threads = None if on_cpu else max(1, (os.cpu_count() or 2) - 4)
    with ThreadPoolExecutor(max_workers=1) as beside:
        references = {dataset: [beside.submit(lambda d=dataset, s=seed: trained(
                                    check.simcast(*train_args(check, d, "cpu", s), threads=threads)))
                                for seed in check.sizes.reference_seeds
                                if not (on_cpu and seed in check.sizes.device_seeds)]
                      for dataset in SAMPLES if ok(found[dataset]["ingest"])}
        device_runs = {}
        for dataset in references:
            steps = found[dataset]
            runs = device_runs[dataset] = {seed: trained(check.simcast(*train_args(check, dataset, check.device, seed)))
                                           for seed in check.sizes.device_seeds}
            steps["train"] = list(runs.values())
            best = next((t["checkpoint"] for t in steps["train"] if ok(t)), None)
            if best:
                steps["evaluate"] = scores(check.simcast("evaluate", dataset, "--checkpoint", best, "--device",
                                                         check.device, *check.sizes.evaluate_options.get(dataset, [])))
                steps["forecast"] = check.simcast("forecast", dataset, "--checkpoint", best, "--device",
                                                  check.device, "--out", str(check.work / "forecasts" / dataset))
        for dataset, futures in references.items():
            steps, runs = found[dataset], device_runs[dataset]
            beside_runs = iter([f.result() for f in futures])
            steps["reference_cpu_fp32"] = [runs[seed] if on_cpu and seed in runs else next(beside_runs)
                                           for seed in check.sizes.reference_seeds]
            device_losses = [t["best_val_loss"] for t in steps["train"] if "best_val_loss" in t]
            reference = [t["best_val_loss"] for t in steps["reference_cpu_fp32"] if "best_val_loss" in t]
            steps["val_loss_within_cpu_seed_spread"] = within_spread(device_losses, reference)
    return found


def throughput_cases(check: Check, batches, paths, compile_mode="default", phases=None):
    for translator in check.sizes.translators:
        for preset in check.sizes.presets:
            for batch in batches:
                for path in paths:
                    for phase in phases or check.sizes.phases:
                        yield dict(preset=preset, translator=translator, batch=batch, path=path, phase=phase,
                                   device=check.device, steps=check.sizes.steps, repeats=check.sizes.repeats,
                                   warmup=check.sizes.warmup, compile_mode=compile_mode, strict_fp32=True)


def measure(check: Check, cases) -> list[dict]:
    import model_throughput

    records = []
    for spec in cases:
        if check.left() < 5:
            records.append({**spec, "skipped": "the section's time budget is spent"})
            continue
        check.note(f"... {spec['preset']} {spec['translator']} batch {spec['batch']} {spec['path']} "
                   f"{spec['compile_mode']} {spec['phase']}")
        records.append({**spec, **model_throughput.run_case(spec, timeout=check.left())})
    return records


def throughput(check: Check) -> list[dict]:
    batches = check.sizes.batch_sizes
    fast = ["optimized"] if check.sizes.compiled else ["bf16"]
    cases = [*throughput_cases(check, batches, ["eager"]),  # what the goals need first, then the rest
             *throughput_cases(check, batches, fast, phases=check.sizes.fast_phases),
             *throughput_cases(check, batches, ["tf32"]),
             *(throughput_cases(check, batches, ["bf16"]) if check.sizes.compiled else [])]
    if check.sizes.compiled:
        cases += throughput_cases(check, batches, ["optimized"], compile_mode="reduce-overhead")
    return measure(check, cases)


def openstl_fps(check: Check) -> list[dict]:
    fast = "optimized" if check.sizes.compiled else "bf16"
    records = measure(check, throughput_cases(check, [check.sizes.fps_batch], ["eager", fast], phases=("infer",)))
    for r in records:
        r["openstl_v100_fps"] = OPENSTL_V100_FPS[r["preset"]]
        if "samples_per_s" in r:
            r["over_openstl"] = float(f"{r['samples_per_s'] / r['openstl_v100_fps']:.4g}")
    return records


def input_path_command(check: Check, *more: str) -> list[str]:
    return [sys.executable, str(REPO / "benchmarks/gpu_input_path.py"), "--work", str(check.work / "wb140"),
            "--days", str(check.sizes.window_days), *more]


def prepare_input_path(check: Check) -> subprocess.Popen:
    """Write and ingest the synthetic year in the background, while the first sections use the GPU."""
    check.note("$ (beside the first sections) " + " ".join(input_path_command(check, "--prepare-only")))
    return subprocess.Popen(input_path_command(check, "--prepare-only"), cwd=REPO, env=check.environment(),
                            stdout=check.log, stderr=check.log)


def input_path(check: Check) -> dict:
    """The trainer's input path into the device alone, against training steps of SimVP on the same windows."""
    prepared = check.preparing.pop("input_path", None)
    if prepared is not None:
        try:
            if prepared.wait(timeout=max(1.0, check.left())) != 0:
                return {"error": f"preparing the synthetic year failed (exit code {prepared.returncode})"}
        except subprocess.TimeoutExpired:
            prepared.kill()
            return {"error": "preparing the synthetic year did not end within the section's budget"}
    result = check.run(input_path_command(check, "--device", check.device, "--batch-size",
                                          str(check.sizes.window_batch), "--batches", str(check.sizes.window_batches),
                                          "--model-steps", str(check.sizes.steps),
                                          "--model", json.dumps(check.sizes.window_model)))
    line = last_line(result)
    if ok(result) and line and line.startswith("{"):
        result.update(json.loads(line))
    return result


def torchrun(check: Check) -> dict:
    ingest = check.simcast("ingest", "nybike")  # a no-op after the chain
    if not ok(ingest):
        return {"ingest": ingest}
    args = ["train", "nybike", "--device", check.device, "--epochs", "1"]
    if check.sizes.torchrun_steps:
        args += ["--max-steps-per-epoch", str(check.sizes.torchrun_steps)]
    result = check.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                        "-m", "pipelines.cli", *args])
    result = trained(result)
    result["note"] = ("one process: WORLD_SIZE 1, so the trainer runs without a process group or DDP wrapper; "
                      "DDP itself needs --nproc_per_node >= 2")
    return result


SECTIONS = {"environment": environment, "chain": chain, "throughput": throughput, "openstl_fps": openstl_fps,
            "input_path": input_path, "torchrun": torchrun}


# ---- goals ----------------------------------------------------------------------------------------------------


def rate(records, preset, batch, path, phase, mode="default"):
    for r in records or []:
        if (r.get("preset"), r.get("batch"), r.get("path"), r.get("phase"), r.get("compile_mode")) == (
                preset, batch, path, phase, mode) and "samples_per_s" in r:
            return r["samples_per_s"]
    return None


def best_ratio(records, phase, fast_paths) -> float | None:
    """The smallest speedup over eager fp32 (over presets and batch sizes) of the fastest measured path."""
    ratios = []
    for preset in {r.get("preset") for r in records or []}:
        for batch in {r.get("batch") for r in records or []}:
            eager = rate(records, preset, batch, "eager", phase)
            fastest = max([v for p, m in fast_paths if (v := rate(records, preset, batch, p, phase, m))], default=None)
            if eager and fastest:
                ratios.append(fastest / eager)
    return round(min(ratios), 3) if ratios else None


def goals(results: dict) -> dict:
    records = results.get("throughput") if isinstance(results.get("throughput"), list) else []
    fast = [("optimized", "default"), ("optimized", "reduce-overhead"), ("bf16", "default")]
    errors = [r["rel_err"] for r in records if r.get("path") in ("bf16", "optimized") and "rel_err" in r]
    fps = results.get("openstl_fps") if isinstance(results.get("openstl_fps"), list) else []
    over = {}
    for r in fps:
        if "over_openstl" in r:
            over[r["preset"]] = max(over.get(r["preset"], 0), r["over_openstl"])
    chain_found = results.get("chain") if isinstance(results.get("chain"), dict) else {}
    codes = [s.get("exit_code") for steps in chain_found.values() for key, s in steps.items()
             if key in ("ingest", "evaluate", "forecast")]
    codes += [t.get("exit_code") for steps in chain_found.values() for t in steps.get("train", [])]
    inputs = results.get("input_path") if isinstance(results.get("input_path"), dict) else {}
    measured = dict(
        training_speedup=best_ratio(records, "train", fast),
        inference_speedup=best_ratio(records, "infer", fast),
        bf16_rel_err=max(errors) if errors else None,
        fps_over_openstl=min(over.values()) if over and len(over) == len({r["preset"] for r in fps}) else None,
        input_over_training=inputs.get("input_over_training"),
    )
    found = {name: {"value": value, "goal": GOALS[name],
                    "met": None if value is None else (value <= GOALS[name] if name == "bf16_rel_err"
                                                       else value >= GOALS[name])}
             for name, value in measured.items()}
    found["chain_exit_codes"] = {"value": codes, "goal": "all 0", "met": bool(codes) and all(c == 0 for c in codes)}
    found["within_cpu_seed_spread"] = {"value": {d: s.get("val_loss_within_cpu_seed_spread")
                                                 for d, s in chain_found.items()}, "goal": True}
    found["within_cpu_seed_spread"]["met"] = all(found["within_cpu_seed_spread"]["value"].values()) or None
    return found


def summary(results: dict) -> str:
    env = results.get("environment", {})
    lines = [f"# GPU check ({results['device']}, sizes {results['sizes']})", "",
             f"- {env.get('gpu', 'no GPU')}; torch {env.get('torch')}, CUDA {env.get('cuda')}, "
             f"Python {env.get('python')}; nvidia-smi: {env.get('nvidia_smi')}",
             f"- wall time {results.get('wall_s')} s; sections: " + ", ".join(
                 f"{name} {results.get('seconds', {}).get(name)} s" for name in SECTIONS), "",
             "| goal | value | target | met |", "| --- | --- | --- | --- |"]
    for name, g in results.get("goals", {}).items():
        lines.append(f"| {name} | {g['value']} | {g['goal']} | {g['met']} |")
    return "\n".join(lines) + "\n"


# ---- main -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (the dry run)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes, for the CPU dry run")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "outputs/gpu-check"))
    p.add_argument("--work", type=Path, default=Path("/tmp/simcast-gpu-check"), help="stores, runs, forecasts")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--budget", action="append", default=[], metavar="SECTION=SECONDS")
    p.add_argument("--translators", nargs="+", help="SimVP translators for the throughput (default: gsta)")
    args = p.parse_args(argv)

    sizes = TINY if args.tiny else Sizes()
    budgets = {**sizes.budgets, **{k: float(v) for k, v in (b.split("=", 1) for b in args.budget)}}
    sizes = replace(sizes, budgets=budgets, translators=tuple(args.translators or sizes.translators))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    check = Check(args.device, sizes, args.out, args.work)
    t0 = time.monotonic()
    check.results["seconds"] = {}
    if "input_path" in args.sections:
        check.preparing["input_path"] = prepare_input_path(check)
    for name in args.sections:
        check.deadline = time.monotonic() + budgets[name]
        check.note(f"== {name} (budget {budgets[name]:.0f} s)")
        start = time.monotonic()
        try:
            check.results[name] = SECTIONS[name](check)
        except Exception as error:  # one broken section must not cost the others: recorded, traceback logged
            check.log.write(traceback.format_exc())
            check.results[name] = {"error": f"{type(error).__name__}: {error}"}
        check.results["seconds"][name] = round(time.monotonic() - start, 1)
        check.results["wall_s"] = round(time.monotonic() - t0, 1)
        check.results["goals"] = goals(check.results)
        check.write()
    (args.out / "gpu_check.md").write_text(summary(check.results))
    print(summary(check.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
