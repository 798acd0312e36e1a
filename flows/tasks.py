"""Prefect tasks: one per stage, each running the stage on the spec the flow built (the same stages and specs the
`simcast` command runs). Tasks are the unit of retry and caching; they log through the run logger and hand plain
data (paths as strings, summaries as dicts) to the next task, never tensors or datasets.

Caching is keyed by what the result depends on, as it is on disk: source files (path, size, modification
time, through the same fingerprint ingest writes into the store), checkpoint contents (SHA-256) and the
store's fingerprint. A cached result is used only while the output it describes is still on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.hashing import hash_objects

from pipelines.errors import USER_ERRORS, UsageError, one_line
from pipelines.specs import DownloadSpec, EvaluateSpec, ForecastSpec, IngestSpec, ReportSpec, TrainSpec, VerifySpec


class BadInput(Exception):
    """A stage refused its input. The message is the stage's one line: the file or parameter, the problem; it is
    what the Prefect UI shows as the task's and the flow's state message."""


@contextlib.contextmanager
def one_line_errors():
    """A user error (bad input, a bad parameter) becomes BadInput with the same one line, logged through the run
    logger; parameters are named as the flow names them. A bug in simcast keeps its traceback."""
    try:
        yield
    except BadInput:
        raise
    except USER_ERRORS as exc:
        message = one_line(exc, flag=lambda option: option)
        get_run_logger().error(message)
        raise BadInput(message) from None


def io_retry(task, task_run, state) -> bool:
    """Retry condition: I/O trouble (a busy file system, a dropped Dask connection), never bad input."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return isinstance(exc, (OSError, TimeoutError)) and not isinstance(exc, USER_ERRORS + (BadInput,))


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


# ---- download -------------------------------------------------------------------------------------------

@task(name="download", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=io_retry,
      task_run_name="download {spec.dataset}")
def download_sources(spec: DownloadSpec) -> dict:
    """Fetch the entry's raw files into the data root (resumable, checked; a no-op, without the network, when they
    are there and verified). Data without a stable link (TaxiBJ) fails with where to get the files and where they go."""
    from pipelines import download

    logger = get_run_logger()
    with one_line_errors():
        result = download.run(spec, progress=False, log=logger.info)
    if result.note:
        logger.info("%s: %s", spec.dataset, result.note)
    for item in result.items:
        logger.info("%s: %s%s", spec.data_root / item.path, item.status,
                    f" ({item.transferred} bytes transferred)" if item.status == "downloaded" else "")
    return result.as_dict()


# ---- ingest ---------------------------------------------------------------------------------------------

def ingest_cache_key(context, parameters: dict) -> str | None:
    """Cached while the store on disk carries the fingerprint of the current sources; otherwise (no store,
    changed files or catalog entry, force, any problem) no key, and the task runs."""
    spec: IngestSpec = parameters["spec"]
    if spec.force:
        return None
    from pipelines.ingest.sources import find_sources
    from pipelines.store import STORE_FORMAT

    try:
        fp = find_sources(spec.entry, spec.source_root, spec.source, STORE_FORMAT).fingerprint
    except Exception:  # noqa: BLE001 - the task itself reports the problem
        return None
    if store_fingerprint(spec.store) != fp:
        return None
    return hash_objects("simcast-ingest", spec.dataset, str(spec.store), fp)


@task(name="ingest", cache_key_fn=ingest_cache_key, persist_result=True, retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=io_retry, task_run_name="ingest {spec.dataset}")
def ingest_store(spec: IngestSpec) -> dict:
    """Validate the raw files and write the canonical Zarr store (a no-op when it is current)."""
    from pipelines import ingest

    logger = get_run_logger()
    where = f" on the Dask cluster at {spec.dask_address}" if spec.dask_address else ""
    logger.info("ingest %s -> %s%s", spec.dataset, spec.store, where)
    with one_line_errors():
        result = ingest.run(spec, progress=False)
    s = result.summary
    logger.info("store %s %s: %s steps of %s, %s .. %s, %s missing steps in %s gaps", spec.store,
                "is current" if result.skipped else "written", s["time_steps"], s["time_step"], s["start"], s["end"],
                s["missing_steps"], s["gaps"])
    return {"store": str(spec.store), "skipped": result.skipped, "summary": s}


# ---- train ----------------------------------------------------------------------------------------------

def nproc(nproc_per_node: int | None) -> int:
    """Processes per node: the parameter, else $SIMCAST_NPROC_PER_NODE (a deployment job variable), else 1."""
    env = os.environ.get("SIMCAST_NPROC_PER_NODE") or "1"
    if nproc_per_node is None and not env.isdigit():
        raise UsageError("nproc_per_node", f"SIMCAST_NPROC_PER_NODE must be a whole number of processes, got {env!r}")
    n = nproc_per_node if nproc_per_node is not None else int(env)
    if n < 1:
        raise UsageError("nproc_per_node", f"must be >= 1, got {n}")
    return n


def torchrun_command(spec_file: Path, dataset: str, nproc_per_node: int) -> list[str]:
    """`torchrun --standalone --nproc_per_node N -m pipelines.cli train NAME --spec FILE`: every rank runs the
    same spec; simvp's trainer sets up DistributedDataParallel itself when WORLD_SIZE > 1."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "pipelines.cli", "train", dataset, "--spec", str(spec_file)]


def run_logged(cmd: list[str], logger, env: dict) -> None:
    """Run a command in its own process group, its output lines to the run logger; a user-error line from
    simcast ('error: ...') becomes BadInput. The group is killed if the task is interrupted."""
    logger.info("running %s", shlex.join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, **env, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"})
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


@task(name="train", cache_policy=NO_CACHE, task_run_name="train {spec.dataset}")
def train_model(spec: TrainSpec, nproc_per_node: int | None = None) -> dict:
    """Train SimVP as the spec says (in this process, or under torchrun on several); the run folder gets
    spec.json, best.pt, last.pt, metrics.csv and history.json."""
    from pipelines import train
    from pipelines.outputs import write_text_atomic
    from pipelines.settings import Settings

    logger = get_run_logger()
    with one_line_errors():
        n = nproc(nproc_per_node)
        if n > 1:
            train.prepare_run_dir(spec)
            spec_file = write_text_atomic(spec.run_dir / "spec.json", spec.dump() + "\n")
            run_logged(torchrun_command(spec_file, spec.dataset, n), logger, Settings.load().environment())
        else:
            train.run(spec, progress=True, log=logger.info)
    history = json.loads((spec.run_dir / "history.json").read_text())
    best = [r for r in history if r.get("best")][-1]
    logger.info("best epoch %s of %s: validation loss %.5g; run folder %s", best["epoch"], len(history),
                best["val_loss"], spec.run_dir)
    return {"run_dir": str(spec.run_dir), "best_path": str(spec.run_dir / "best.pt"), "best_epoch": best["epoch"],
            "epochs": len(history), "best_val_loss": best["val_loss"], "processes": n}


# ---- evaluate -------------------------------------------------------------------------------------------

def evaluate_cache_key(context, parameters: dict) -> str | None:
    """Cached by the checkpoint's contents, the store's fingerprint, the external forecasts' metadata and the spec,
    while metrics.json is there."""
    from pipelines.remote import describe
    from pipelines.specs import parse_external

    spec: EvaluateSpec = parameters["spec"]
    try:
        if not (spec.out / "metrics.json").is_file():
            return None
        external = [describe(parse_external(text)[1]) for text in spec.external]
        return hash_objects("simcast-evaluate", spec.model_dump_json(exclude={"device"}),
                            file_digest(spec.checkpoint), store_fingerprint(spec.store), external)
    except Exception:  # noqa: BLE001
        return None


@task(name="evaluate", cache_key_fn=evaluate_cache_key, persist_result=True, retries=1, retry_delay_seconds=10,
      retry_condition_fn=io_retry, task_run_name="evaluate {spec.dataset} ({spec.split})")
def evaluate_model(spec: EvaluateSpec) -> dict:
    """Score the checkpoint on a split next to persistence, previous-day and climatology (physical units)."""
    from pipelines import evaluate
    from pipelines.report.tables import metrics_table

    logger = get_run_logger()
    with one_line_errors():
        _, info, paths = evaluate.run(spec, progress=False)
    metrics = json.loads(Path(paths["metrics"]).read_text())  # as written: JSON-safe (null for undefined scores)
    units = set(info.get("units", {}).values())
    header, rows = metrics_table(metrics, units.pop() if len(units) == 1 else "")
    logger.info("%s split, %s samples: %s", spec.split, info["samples"],
                "; ".join(f"{r[0]}: {header[1]} {r[1]}" for r in rows))
    return {"metrics": metrics, "info": info, "paths": {k: str(v) for k, v in paths.items()}}


# ---- forecast -------------------------------------------------------------------------------------------

@task(name="forecast", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=io_retry,
      task_run_name="forecast {spec.dataset}")
def write_forecast(spec: ForecastSpec) -> dict:
    """Forecast from the spec's init times (default: the latest time in the store); writes <out>.zarr and
    <out>.nc, georeferenced (CF)."""
    from pipelines import forecast

    logger = get_run_logger()
    with one_line_errors():
        paths = forecast.run(spec)
    inits = ", ".join(spec.init_times) if spec.init_times else "the latest time in the store"
    logger.info("forecast from %s with %s: %s", inits, spec.checkpoint, ", ".join(str(p) for p in paths.values()))
    return {k: str(Path(v).absolute()) for k, v in paths.items()}


# ---- verify ---------------------------------------------------------------------------------------------

@task(name="verify", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10, retry_condition_fn=io_retry,
      task_run_name="verify {spec.dataset}")
def verify_archive(spec: VerifySpec) -> dict:
    """Score the archived forecasts whose valid times are in the store next to the baselines; writes the
    verification folder. Nothing to verify yet (every forecast awaits its truth) is not a failure: the result
    says so ({"verified": False, "message": ...})."""
    from pipelines import verify
    from pipelines.errors import one_line

    logger = get_run_logger()
    with one_line_errors():
        try:
            outcome = verify.run(spec)
        except verify.NothingToVerify as e:
            logger.info("nothing to verify yet: %s", one_line(e))
            return {"verified": False, "message": one_line(e), "archive": str(spec.archive_path)}
    paths = {k: str(Path(v).absolute()) for k, v in outcome["paths"].items()}
    result = json.loads(Path(paths["json"]).read_text())  # as written: JSON-safe
    result.pop("by_init")  # per init time: in the files; the artifacts show scores overall and by lead
    logger.info("verification %s: %s", paths["html"], verify.summary_line(result))
    return {"verified": True, "message": verify.summary_line(result), "archive": str(spec.archive_path),
            "paths": paths, "result": result}


# ---- maps and report ------------------------------------------------------------------------------------

@task(name="map-report", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=io_retry,
      task_run_name="maps and report")
def map_report(spec: ReportSpec) -> dict:
    """Cartopy maps of the forecast (observed, forecast, truth, error where the truth store covers them), the
    lead-time metrics plot and report.html / report.md, in one folder replaced whole."""
    from pipelines import report

    logger = get_run_logger()
    with one_line_errors():
        result = report.run(spec)
    logger.info("report %s with %d maps", result["html"], len(result["maps"]))
    return {"html": str(Path(result["html"]).absolute()), "markdown": str(Path(result["markdown"]).absolute()),
            "maps": [str(Path(p).absolute()) for p in result["maps"]],
            "metrics_plot": str(Path(result["metrics_plot"]).absolute()) if result.get("metrics_plot") else None,
            "dir": str(Path(result["dir"]).absolute())}
