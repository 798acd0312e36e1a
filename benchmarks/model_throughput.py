"""SimVP throughput: training steps/s and inference samples/s, eager fp32 vs the optimized path.

Paths (--paths; the default compares the first and the last):
  eager      fp32, NCHW, no compilation
  tf32       eager with TF32 on for matmuls and cuDNN convolutions
  bf16       bf16 autocast + channels_last, no compilation
  compiled   fp32 + torch.compile
  optimized  bf16 autocast + channels_last + torch.compile

Each (preset, batch, path, phase) runs in its own subprocess, so peak memory belongs to that case
alone and one compiler failure cannot take the others down. Prints Markdown tables.

    python benchmarks/model_throughput.py                                  # GPU if present
    python benchmarks/model_throughput.py --device cpu --batch-sizes 16 --steps 3 --repeats 3

Numbers: median over --repeats timed runs of --steps each, after --warmup untimed steps.
FLOPs: torch.utils.flop_counter on one forward pass (2 FLOPs per multiply-accumulate).
Peak memory: torch.cuda.max_memory_allocated on GPU; peak resident set size of the worker
process on CPU (includes the ~0.3-0.5 GB of the Python + torch runtime).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import simvp  # noqa: E402
from data_catalog.presets import load_preset, preset_names  # noqa: E402

PATHS = ("eager", "tf32", "bf16", "compiled", "optimized")
DEFAULT_PATHS = ["eager", "optimized"]
USES_BF16 = {"bf16", "optimized"}
USES_COMPILE = {"compiled", "optimized"}
PHASES = ("train", "infer")


# ------------------------------------------------------------------------------------------
# Worker: one measurement in a fresh process
# ------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


@contextlib.contextmanager
def strict_fp32():
    """Disable TF32 in cuDNN convolutions and matmuls for the duration."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def build(preset: str, translator: str) -> simvp.SimVP:
    """A fresh SimVP of a released configuration (data_catalog/presets/<preset>.yaml)."""
    return simvp.SimVP(simvp.SimVPConfig(**load_preset(preset).model, translator=translator))


def make_model(spec: dict, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(spec["preset"], spec["translator"]).to(device)


def make_batch(model: simvp.SimVP, batch: int, device: torch.device):
    torch.manual_seed(1)
    frames, channels, height, width = model.config.in_shape
    x = torch.randn(batch, frames, channels, height, width, device=device)
    y = torch.randn(batch, model.out_frames, channels, height, width, device=device)
    return x, y


def prepare(model: torch.nn.Module, spec: dict):
    """The model to call and the autocast context for the path."""
    device_type = torch.device(spec["device"]).type
    run = model
    if spec["path"] in USES_BF16:
        model.to(memory_format=torch.channels_last)
    if spec["path"] in USES_COMPILE:
        run = torch.compile(model, mode=spec["compile_mode"])
    if spec["path"] in USES_BF16:
        return run, lambda: torch.autocast(device_type, dtype=torch.bfloat16)
    return run, lambda: torch.autocast(device_type, enabled=False)


def time_repeats(step, spec: dict, device: torch.device) -> list[float]:
    """Seconds per step, one value per repeat."""
    for _ in range(spec["warmup"]):
        step()
    sync(device)
    per_step = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        for _ in range(spec["steps"]):
            step()
        sync(device)
        per_step.append((time.perf_counter() - start) / spec["steps"])
    return per_step


def run_worker(spec: dict) -> dict:
    device = torch.device(spec["device"])
    if spec["strict_fp32"]:  # otherwise PyTorch defaults: cuDNN convolutions may use TF32
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if spec["path"] == "tf32":
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
    model = make_model(spec, device)
    x, y = make_batch(model, spec["batch"], device)
    result: dict = {}

    if spec["phase"] == "infer":
        model.eval()
        if spec["path"] != "eager":  # accuracy of this path against strict fp32 (no TF32)
            with torch.inference_mode(), strict_fp32():
                reference = model(x).float()
        run, autocast = prepare(model, spec)

        def step():
            with torch.inference_mode(), autocast():
                return run(x)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = time_repeats(step, spec, device)
        if spec["path"] != "eager":
            out = step().float()
            result["rel_err"] = ((out - reference).norm() / reference.norm()).item()
        result["samples_per_s"] = spec["batch"] / statistics.median(seconds)
    else:
        model.train()
        run, autocast = prepare(model, spec)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with autocast():
                loss = F.mse_loss(run(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = time_repeats(step, spec, device)
        result["steps_per_s"] = 1.0 / statistics.median(seconds)
        result["samples_per_s"] = spec["batch"] / statistics.median(seconds)
    result["seconds_per_step"] = seconds
    result["peak_memory_bytes"] = peak_memory_bytes(device)
    return result


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------


def forward_flops_per_sample(preset: str, translator: str) -> int:
    with torch.device("meta"):
        model = build(preset, translator).eval()
        x = torch.empty(1, *model.config.in_shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def run_case(spec: dict, timeout: float) -> dict:
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    # Own session, so that a timeout also ends the compiler's worker processes.
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        stdout, stderr = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.communicate()
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    lines = [ln for ln in (stderr or stdout).strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return {"error": (errors or lines or [f"exit code {worker.returncode}"])[-1][:160]}


def describe_machine(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        memory = torch.cuda.get_device_properties(device).total_memory / 2**30
        return f"{name} ({memory:.0f} GiB), CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU only: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def fmt(value, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def memory(result: dict) -> str:
    return fmt(result.get("peak_memory_bytes") and result["peak_memory_bytes"] / 2**30, "{:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=preset_names(), choices=preset_names(),
                        help="released configurations (data_catalog/presets/*.yaml)")
    parser.add_argument("--translator", default="gsta", choices=sorted(simvp.TRANSLATORS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 128])
    parser.add_argument("--paths", nargs="+", default=DEFAULT_PATHS, choices=PATHS)
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation)")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode: default, reduce-overhead, max-autotune")
    parser.add_argument("--strict-fp32", action="store_true",
                        help="disable TF32 (PyTorch's default lets cuDNN convolutions use it)")
    parser.add_argument("--case-timeout", type=float, default=1800, help="seconds per case")
    parser.add_argument("--json", type=Path, help="also write all results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        try:
            result = run_worker(spec)
        except Exception as error:  # reported as n/a with the reason
            message = " ".join(str(error).split())[:160]
            result = {"error": f"{type(error).__name__}: {message}"}
        print("RESULT " + json.dumps(result), flush=True)
        return

    device = torch.device(args.device)
    print(f"# SimVP throughput ({args.translator})\n")
    print(f"- machine: {describe_machine(device)}")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}")
    print(f"- median of {args.repeats} repeats x {args.steps} steps after {args.warmup} warmup "
          f"steps; compile mode `{args.compile_mode}`")
    if device.type == "cuda":
        tf32 = "off (--strict-fp32)" if args.strict_fp32 else "PyTorch default (cuDNN convs on)"
        print(f"- TF32: {tf32}; bf16 error measured against strict fp32")
    print(f"- command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`\n")

    memory_label = "peak GiB (alloc)" if device.type == "cuda" else "peak GiB (RSS)"
    rows, records = [], []
    for preset in args.presets:
        flops = forward_flops_per_sample(preset, args.translator)
        for batch in args.batch_sizes:
            results = {}
            for path in args.paths:
                for phase in args.phases:
                    spec = dict(preset=preset, translator=args.translator, batch=batch, path=path,
                                phase=phase, device=args.device, steps=args.steps,
                                repeats=args.repeats, warmup=args.warmup,
                                compile_mode=args.compile_mode, strict_fp32=args.strict_fp32)
                    print(f"... {preset} batch {batch} {path} {phase}", file=sys.stderr, flush=True)
                    results[path, phase] = run_case(spec, args.case_timeout)
                    records.append({**spec, "fwd_flops_per_sample": flops, **results[path, phase]})
            for path in args.paths:
                train = results.get((path, "train"), {})
                infer = results.get((path, "infer"), {})
                errors = sorted({r["error"] for r in (train, infer) if "error" in r})
                tflops = train.get("samples_per_s") and train["samples_per_s"] * 3 * flops / 1e12
                rows.append(
                    f"| {preset} | {batch} | {path} | {flops / 1e9:.2f} "
                    f"| {fmt(train.get('steps_per_s'), '{:.3g}')} "
                    f"| {fmt(tflops, '{:.3g}')} "
                    f"| {fmt(infer.get('samples_per_s'), '{:.4g}')} "
                    f"| {memory(train)} | {memory(infer)} "
                    f"| {fmt(infer.get('rel_err'), '{:.1e}') if path != 'eager' else '-'} "
                    f"| {'; '.join(errors)} |"
                )
            eager_t = results.get(("eager", "train"), {}).get("steps_per_s")
            eager_i = results.get(("eager", "infer"), {}).get("samples_per_s")
            for path in args.paths[1:] if args.paths[0] == "eager" else []:
                fast_t = results.get((path, "train"), {}).get("steps_per_s")
                fast_i = results.get((path, "infer"), {}).get("samples_per_s")
                rows.append(
                    f"| {preset} | {batch} | {path} / eager | "
                    f"| {fmt(fast_t and eager_t and fast_t / eager_t, '{:.2f}x')} | "
                    f"| {fmt(fast_i and eager_i and fast_i / eager_i, '{:.2f}x')} | | | | |"
                )

    print(f"| preset | batch | path | fwd GFLOP/sample | train steps/s | train TFLOP/s "
          f"| infer samples/s | train {memory_label} | infer {memory_label} "
          f"| bf16 rel err vs fp32 | notes |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
