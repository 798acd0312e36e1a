"""Prefect tasks: one per pipeline stage, each a thin call into `pipelines` (the same functions the `simcast`
command runs). Tasks are the unit of retry and caching; they log through the run logger and hand plain data
(paths as strings, summaries as dicts) to the next task, never tensors or datasets.

Caching is keyed by what the result depends on, as it is on disk: source files (path, size, modification
time, through the same fingerprint ingest writes into the store), checkpoint contents (SHA-256) and the
store's fingerprint. A cached result is used only while the output it describes is still on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.hashing import hash_objects

import data_catalog
from data_catalog import CatalogError
from pipelines.errors import SimcastError

# Bad input: the pipelines say what is wrong in one line (CheckpointError and CatalogError are ValueErrors).
BAD_INPUT = (SimcastError, CatalogError, ValueError)
RUN_NAME = re.compile(r"^(?P<name>.+)-\d{8}-\d{6}$")  # pipelines.train.new_run_dir: <name>-YYYYmmdd-HHMMSS


class BadInput(Exception):
    """A pipeline refused its input. The message is the pipeline's one line: the file, the problem, what was
    expected; it is what the Prefect UI shows as the task's and the flow's state message."""


@contextlib.contextmanager
def one_line_errors():
    """Turn a pipeline's bad-input error into BadInput with the same one line, logged through the run logger
    (no long traceback through the pipeline's internals)."""
    try:
        yield
    except BadInput:
        raise
    except BAD_INPUT as exc:
        message = str(exc).strip() or type(exc).__name__
        get_run_logger().error(message)
        raise BadInput(message) from None


def io_retry(task, task_run, state) -> bool:
    """Retry condition: I/O trouble (a busy file system, a dropped Dask connection), never bad input."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return isinstance(exc, (OSError, TimeoutError)) and not isinstance(exc, BAD_INPUT + (BadInput,))


# ---- where things go ------------------------------------------------------------------------------------

def runs_root(runs_dir: str | None = None) -> Path:
    """Root of training run folders: the parameter, else $SIMCAST_RUNS_ROOT, else ./runs (as `simcast train`)."""
    return Path(runs_dir or os.environ.get("SIMCAST_RUNS_ROOT") or "runs").absolute()


def outputs_root(out_dir: str | None = None) -> Path:
    """Root of forecast outputs: the parameter, else $SIMCAST_OUTPUT_ROOT, else ./outputs."""
    return Path(out_dir or os.environ.get("SIMCAST_OUTPUT_ROOT") or "outputs").absolute()


def slug(text: str) -> str:
    """An artifact key: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def new_run_dir(dataset: str, runs_dir: str | None = None) -> Path:
    from pipelines.train import new_run_dir as stamped

    return runs_root(runs_dir) / stamped(dataset).name


def newest_checkpoint(dataset: str, runs_dir: str | None = None) -> Path:
    """best.pt of the newest run folder of a data set (by its time stamp), as `simcast train` names them."""
    root = runs_root(runs_dir)
    runs = sorted(p for p in root.glob(f"{glob_escape(dataset)}-*")
                  if (m := RUN_NAME.match(p.name)) and m["name"] == dataset and (p / "best.pt").is_file())
    if not runs:
        raise ValueError(f"{root}: no trained checkpoint for {dataset!r} (no {dataset}-<time>/best.pt); "
                         f"run the training flow first or pass checkpoint=...")
    return runs[-1] / "best.pt"


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def require_kind(dataset: str, kind: str, flow_name: str) -> None:
    """The weatherbench-* flows take WeatherBench-kind entries, the taxibj-* flows TaxiBJ-kind ones."""
    with one_line_errors():
        entry = data_catalog.get_entry(dataset)
        if entry.kind != kind:
            raise ValueError(f"{data_catalog.loader.catalog_path()}: entry {dataset!r} is {entry.kind} data; "
                             f"flow {flow_name!r} takes {kind} entries (use the {entry.kind}-* flows)")


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def store_fingerprint(store: str | Path) -> str | None:
    from pipelines.store import read_attrs

    attrs = read_attrs(Path(store))
    return None if attrs is None else attrs.get("fingerprint")


# ---- ingest ---------------------------------------------------------------------------------------------

def source_fingerprint(dataset: str, source: str | None = None) -> str:
    """The fingerprint ingest would write into the store: the catalog entry's data fields and the source
    files as they are now (path, size, modification time)."""
    from pipelines.sources import describe_files, entry_files, fingerprint
    from pipelines.store import STORE_FORMAT

    entry = data_catalog.get_entry(dataset)
    files = sorted({f for fs in entry_files(entry, source).values() for f in fs})
    extra = [data_catalog.source_root(entry) / entry.holidays] if entry.holidays else []
    return fingerprint(entry, describe_files(files + extra), STORE_FORMAT)


def store_for(dataset: str, store: str | None = None) -> Path:
    """The store to write: the given path, else the catalog's (under $SIMCAST_STORE_ROOT), absolute."""
    return (Path(store) if store else data_catalog.store_path(data_catalog.get_entry(dataset))).absolute()


def ingest_cache_key(context, parameters: dict) -> str | None:
    """Cached while the store on disk carries the fingerprint of the current sources; otherwise (no store,
    changed files or catalog entry, force=True, any problem) no key, and the task runs."""
    if parameters.get("force"):
        return None
    try:
        fp = source_fingerprint(parameters["dataset"], parameters.get("source"))
        target = store_for(parameters["dataset"], parameters.get("store"))
    except Exception:  # noqa: BLE001 - the task itself reports the problem
        return None
    if store_fingerprint(target) != fp:
        return None
    return hash_objects("simcast-ingest", parameters["dataset"], str(target), fp)


@task(name="ingest", cache_key_fn=ingest_cache_key, persist_result=True, retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=io_retry, task_run_name="ingest {dataset}")
def ingest_store(dataset: str, source: str | None = None, store: str | None = None,
                 dask_address: str | None = None, force: bool = False) -> dict:
    """Validate the raw files and write the canonical Zarr store (a no-op when it is current)."""
    from pipelines.ingest import ingest

    logger = get_run_logger()
    with one_line_errors():
        target = store_for(dataset, store)
        where = f" on the Dask cluster at {dask_address}" if dask_address else ""
        logger.info("ingest %s -> %s%s", dataset, target, where)
        result = ingest(dataset, source=source, store=target, dask_address=dask_address, progress=False,
                        force=force)
    s = result.summary
    logger.info("store %s %s: %s steps of %s, %s .. %s, %s missing steps in %s gaps", target,
                "is current" if result.skipped else "written", s["time_steps"], s["time_step"], s["start"], s["end"],
                s["missing_steps"], s["gaps"])
    return {"store": str(target), "skipped": result.skipped, "summary": s}


# ---- train ----------------------------------------------------------------------------------------------

# `simcast train` options, for runs under torchrun (the command line is what torchrun starts on every rank)
CLI_TRAIN_OPTIONS = {"batch_size": "--batch-size", "lr": "--lr", "seed": "--seed"}
CLI_TRAIN_FLAGS = {"compile": "--compile", "deterministic": "--deterministic"}


def check_train_options(options: dict | None) -> None:
    """train_options are TrainConfig fields other than those the flow sets itself."""
    import dataclasses

    from simvp.trainer import TrainConfig

    allowed = {f.name for f in dataclasses.fields(TrainConfig)} - {"epochs", "device", "recipe"}
    unknown = sorted(set(options or {}) - allowed)
    if unknown:
        raise ValueError(f"train_options {unknown} are not training settings (epochs and device are parameters of "
                         f"their own; the others: {', '.join(sorted(allowed))})")


def nproc(nproc_per_node: int | None) -> int:
    """Processes per node: the parameter, else $SIMCAST_NPROC_PER_NODE (a deployment job variable), else 1."""
    env = os.environ.get("SIMCAST_NPROC_PER_NODE") or "1"
    if nproc_per_node is None and not env.isdigit():
        raise ValueError(f"SIMCAST_NPROC_PER_NODE must be a whole number of processes, got {env!r}")
    n = nproc_per_node if nproc_per_node is not None else int(env)
    if n < 1:
        raise ValueError(f"nproc_per_node must be >= 1, got {n}")
    return n


def torchrun_command(dataset: str, store: str, run_dir: Path, nproc_per_node: int, preset=None, translator=None,
                     epochs=None, device="auto", options: dict | None = None) -> list[str]:
    """`torchrun --standalone --nproc_per_node N -m pipelines.cli train ...`: the simcast train command on N
    processes; simvp's trainer sets up DistributedDataParallel itself when WORLD_SIZE > 1."""
    args = ["train", dataset, "--store", str(store), "--out", str(run_dir), "--device", device]
    for flag, value in (("--preset", preset), ("--translator", translator), ("--epochs", epochs)):
        if value is not None:
            args += [flag, str(value)]
    for key, value in (options or {}).items():
        if key in CLI_TRAIN_OPTIONS:
            if value is not None:
                args += [CLI_TRAIN_OPTIONS[key], str(value)]
        elif key in CLI_TRAIN_FLAGS:
            if value:
                args.append(CLI_TRAIN_FLAGS[key])
        else:
            known = ", ".join([*CLI_TRAIN_OPTIONS, *CLI_TRAIN_FLAGS])
            raise ValueError(f"train option {key!r} cannot be passed to `simcast train` under torchrun "
                           f"(it takes {known}); drop it or train with nproc_per_node=1")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "pipelines.cli", *args]


def run_logged(cmd: list[str], logger) -> None:
    """Run a command in its own process group, its output lines to the run logger; a bad-input line from
    simcast ('error: ...') becomes BadInput. The group is killed if the task is interrupted."""
    logger.info("running %s", shlex.join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"})
    errors = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                logger.info(line)
            if line.startswith("error: "):
                errors.append(line.removeprefix("error: "))
        rc = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    if rc != 0:
        if errors:
            raise BadInput(errors[-1])
        raise RuntimeError(f"{shlex.join(cmd[:6])} ... exited with status {rc}; see the log above")


@task(name="train", cache_policy=NO_CACHE, task_run_name="train {dataset}")
def train_model(dataset: str, store: str, run_dir: str, preset: str | None = None, translator: str | None = None,
                epochs: int | None = None, device: str = "auto", options: dict | None = None,
                nproc_per_node: int | None = None) -> dict:
    """Train SimVP on the store (in this process, or under torchrun on several); the run folder gets
    best.pt, last.pt, metrics.csv and history.json."""
    from pipelines.train import run_training

    logger = get_run_logger()
    with one_line_errors():
        n = nproc(nproc_per_node)
        check_train_options(options)
        if n > 1:
            run_logged(torchrun_command(dataset, store, Path(run_dir), n, preset, translator, epochs, device,
                                        options), logger)
        else:
            run_training(dataset, store=store, preset=preset, translator=translator, epochs=epochs,
                         device=device, out=run_dir, progress=True, log=logger.info, **(options or {}))
    history = json.loads((Path(run_dir) / "history.json").read_text())
    best = [r for r in history if r.get("best")][-1]
    logger.info("best epoch %s of %s: validation loss %.5g; run folder %s", best["epoch"], len(history),
                best["val_loss"], run_dir)
    return {"run_dir": str(run_dir), "best_path": str(Path(run_dir) / "best.pt"), "best_epoch": best["epoch"],
            "epochs": len(history), "best_val_loss": best["val_loss"], "processes": n}


# ---- evaluate -------------------------------------------------------------------------------------------

def eval_dir(checkpoint: str, split: str, out: str | None) -> Path:
    return Path(out).absolute() if out else Path(checkpoint).absolute().parent / f"eval-{split}"


def evaluate_cache_key(context, parameters: dict) -> str | None:
    """Cached by the checkpoint's contents, the store's fingerprint and the split, while metrics.json is there."""
    try:
        out = eval_dir(parameters["checkpoint"], parameters.get("split", "test"), parameters.get("out"))
        if not (out / "metrics.json").is_file():
            return None
        return hash_objects("simcast-evaluate", parameters["dataset"], file_digest(parameters["checkpoint"]),
                            store_fingerprint(parameters["store"]), parameters.get("split", "test"), str(out))
    except Exception:  # noqa: BLE001
        return None


@task(name="evaluate", cache_key_fn=evaluate_cache_key, persist_result=True, retries=1, retry_delay_seconds=10,
      retry_condition_fn=io_retry, task_run_name="evaluate {dataset} ({split})")
def evaluate_model(dataset: str, checkpoint: str, store: str, split: str = "test", device: str = "auto",
                   out: str | None = None) -> dict:
    """Score the checkpoint on a split next to persistence, previous-day and climatology (physical units)."""
    from pipelines.evaluate import evaluate_checkpoint
    from pipelines.report import metrics_table

    logger = get_run_logger()
    with one_line_errors():
        metrics, info, paths = evaluate_checkpoint(dataset, checkpoint, split=split, store=store, device=device,
                                                   out=eval_dir(checkpoint, split, out), progress=False)
    metrics = json.loads(Path(paths["metrics"]).read_text())  # as written: JSON-safe (null for undefined scores)
    units = set(info.get("units", {}).values())
    header, rows = metrics_table(metrics, units.pop() if len(units) == 1 else "")
    logger.info("%s split, %s samples: %s", split, info["samples"],
                "; ".join(f"{r[0]}: {header[1]} {r[1]}" for r in rows))
    return {"metrics": metrics, "info": info, "paths": {k: str(v) for k, v in paths.items()}}


# ---- forecast -------------------------------------------------------------------------------------------

def verifiable_init_time(store: str, dataset: str) -> str | None:
    """The latest init time whose input frames and whole forecast horizon are in the store (so the maps show
    the truth next to the forecast); None when there is none."""
    from pipelines.store import open_store

    entry = data_catalog.get_entry(dataset)
    ds = open_store(store)
    times = pd.DatetimeIndex(ds["time"].values)
    step = pd.Timedelta(ds.attrs["time_step"])
    t_in, n = entry.window.input, entry.window.input + entry.window.output
    t = times.asi8
    if len(t) < n:
        return None
    whole = np.flatnonzero(t[n - 1:] - t[: len(t) - n + 1] == (n - 1) * step.value)
    return times[whole[-1] + t_in - 1].isoformat() if len(whole) else None


def latest_time(store: str) -> pd.Timestamp:
    from pipelines.store import open_store

    return pd.Timestamp(open_store(store)["time"].values[-1])


@task(name="forecast", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=io_retry,
      task_run_name="forecast {dataset}")
def write_forecast(dataset: str, checkpoint: str, store: str, out: str, init_times: list[str] | None = None,
                   lead_hours: float | None = None, device: str = "auto") -> dict:
    """Forecast from the given init times (default: the latest time in the store); writes <out>.zarr and
    <out>.nc, georeferenced (CF)."""
    from pipelines.forecast import run_forecast

    logger = get_run_logger()
    with one_line_errors():
        paths = run_forecast(dataset, checkpoint, out, init_times=init_times, lead_hours=lead_hours, store=store,
                             device=device)
    inits = ", ".join(init_times) if init_times else "the latest time in the store"
    logger.info("forecast from %s with %s: %s", inits, checkpoint, ", ".join(str(p) for p in paths.values()))
    return {k: str(Path(v).absolute()) for k, v in paths.items()}


# ---- maps and report ------------------------------------------------------------------------------------

def parse_leads(leads: list | None) -> list | None:
    """Map lead times: bare numbers are hours (as `simcast report --lead`), strings like '30min' pass through."""
    if not leads:
        return None
    out = []
    for x in leads:
        if isinstance(x, (int, float)):
            out.append(float(x))
        else:
            s = str(x).strip()
            out.append(float(s) if s.replace(".", "", 1).isdigit() else s)
    return out


@task(name="map-report", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=io_retry,
      task_run_name="maps and report")
def map_report(forecast: str, out: str, truth: str | None = None, metrics: dict | None = None,
               projection: str = "PlateCarree", leads: list | None = None) -> dict:
    """Cartopy maps of the forecast (observed, forecast, truth, error where the truth store covers them), the
    lead-time metrics plot and report.html / report.md, in one folder replaced whole."""
    from pipelines.report import write_report

    logger = get_run_logger()
    with one_line_errors():
        result = write_report(forecast, out, truth_store=truth, metrics=metrics, projection=projection,
                              leads=parse_leads(leads))
    logger.info("report %s with %d maps", result["html"], len(result["maps"]))
    return {"html": str(Path(result["html"]).absolute()), "markdown": str(Path(result["markdown"]).absolute()),
            "maps": [str(Path(p).absolute()) for p in result["maps"]],
            "metrics_plot": str(Path(result["metrics_plot"]).absolute()) if result.get("metrics_plot") else None,
            "dir": str(Path(result["dir"]).absolute())}
