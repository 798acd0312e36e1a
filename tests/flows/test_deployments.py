"""The production route end to end: a real Prefect server on a free loopback port with its own PREFECT_HOME, the
process work pool, `prefect --no-prompt deploy --all` from prefect.yaml, a worker, and
`prefect deployment run weatherbench-train/weatherbench-train` (then the forecast deployment) on tiny data,
pointed at a temporary folder through job variables. Every process started here is stopped, also on failure."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from .conftest import api_post, write_tiny_data

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "simcast-process"


def _fastapi_breaks_prefect_clients() -> str | None:
    """FastAPI 0.151-0.154 validates explicit JSON nulls instead of using the default, so the Prefect server
    rejects the client's `"limit": null` (e.g. in `prefect deploy`); 0.155+ does not start it at all."""
    import fastapi

    version = tuple(int(x) for x in fastapi.__version__.split(".")[:2])
    if (0, 151) <= version < (0, 155):
        return (f"fastapi {fastapi.__version__}: the Prefect server answers 422 to `prefect deploy` (explicit null "
                "limit/offset); needs fastapi<0.151")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Long-running commands, each in its own process group with its output in a log file."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict, cwd: Path) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append((name, proc))
        return proc

    def log(self, name: str, tail: int = 4000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-tail:]

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):  # the worker before the server it talks to
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            try:  # flow-run subprocesses left in the group
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def start_server(tmp_path: Path, procs: Processes, **settings: str) -> dict:
    """`prefect server start` on a free loopback port, PREFECT_HOME in tmp_path; returns the environment for
    CLI commands, workers and flow runs that talk to it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_CLI_COLORS="false", COLUMNS="200", **settings)
    server = procs.start("server", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                         env, tmp_path)
    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=5).status_code == 200:
                return env
        except httpx.HTTPError:
            pass
        assert server.poll() is None, f"the Prefect server exited:\n{procs.log('server')}"
        assert time.monotonic() < deadline, f"the Prefect server did not answer:\n{procs.log('server')}"
        time.sleep(1)


@pytest.fixture
def procs(tmp_path):
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def cli(env: dict, *args: str, cwd: Path = REPO, timeout: float = 600) -> str:
    r = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"prefect {' '.join(args)} failed ({r.returncode}):\n{out[-6000:]}"
    return out


def test_deploy_and_run_the_training_and_forecast_deployments(procs, tmp_path):
    if reason := _fastapi_breaks_prefect_clients():
        pytest.skip(reason)
    env = start_server(tmp_path, procs)
    api = env["PREFECT_API_URL"]
    cli(env, "work-pool", "create", POOL, "--type", "process")
    cli(env, "--no-prompt", "deploy", "--all")

    flows = {f["id"]: f["name"] for f in api_post(api, "/flows/filter", {})}
    deployments = {f"{flows[d['flow_id']]}/{d['name']}": d for d in api_post(api, "/deployments/filter", {})}
    assert set(deployments) == {f"{n}/{n}" for n in ("weatherbench-train", "taxibj-train", "weatherbench-forecast",
                                                      "taxibj-forecast", "ingest", "map-report")}
    for name, cron in (("weatherbench-forecast", "0 */6 * * *"), ("taxibj-forecast", "*/30 * * * *")):
        (schedule,) = deployments[f"{name}/{name}"]["schedules"]
        assert schedule["schedule"]["cron"] == cron and schedule["schedule"]["timezone"] == "UTC"
        assert schedule["active"] is False  # paused until a model exists (documented in prefect.yaml)
    assert all(d["work_pool_name"] == POOL for d in deployments.values())

    # the worker runs in another folder: the deployment's pull step takes each flow run to the repository
    procs.start("worker", [PREFECT, "worker", "start", "--pool", POOL], env, tmp_path)
    root = tmp_path / "simcast"
    job_env = {"SIMCAST_CATALOG": str(write_tiny_data(root)), "SIMCAST_DATA_ROOT": str(root / "data"),
               "SIMCAST_STORE_ROOT": str(root / "stores"), "SIMCAST_RUNS_ROOT": str(root / "runs"),
               "SIMCAST_OUTPUT_ROOT": str(root / "outputs")}
    run_args = ["-p", "dataset=tiny-wb", "-p", "device=cpu", "-p", 'map_leads=["6"]',
                "--job-variable", f"env={json.dumps(job_env)}", "--watch", "--watch-interval", "2",
                "--watch-timeout", "480"]
    out = cli(env, "deployment", "run", "weatherbench-train/weatherbench-train", *run_args, cwd=tmp_path)
    assert "Completed" in out, out[-3000:] + procs.log("worker")

    (run_dir,) = (root / "runs").glob("tiny-wb-*")
    assert (root / "stores/tiny-wb.zarr/zarr.json").is_file()
    for name in ("best.pt", "eval-test/metrics.json", "hindcast.nc", "report/report.html",
                 "report/maps/t2m_lead06h.png"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "eval-test/metrics.json").read_text())
    assert set(metrics) == {"model", "persistence", "previous_day", "climatology", "fitted", "scorecard"}
    artifacts = {a["key"]: a for a in api_post(api, "/artifacts/filter", {})}
    assert "| persistence |" in artifacts["tiny-wb-training"]["data"]
    assert json.loads(artifacts["tiny-wb-metrics"]["data"])[0]["forecaster"] == "model"
    assert (run_dir / "report/report.html").as_uri() in artifacts["tiny-wb-report"]["data"]

    out = cli(env, "deployment", "run", "weatherbench-forecast/weatherbench-forecast", *run_args, cwd=tmp_path)
    assert "Completed" in out, out[-3000:] + procs.log("worker")
    folder = root / "outputs/forecasts/tiny-wb/20100107T2300"
    assert (folder / "forecast.nc").is_file() and (folder / "report/maps/t2m_lead06h.png").is_file()
    artifacts = {a["key"]: a for a in api_post(api, "/artifacts/filter", {})}
    assert (folder / "forecast.nc").as_uri() in artifacts["tiny-wb-forecast-netcdf"]["data"]

    runs = api_post(api, "/flow_runs/filter", {})
    assert sorted(r["state"]["name"] for r in runs) == ["Completed", "Completed"]
    assert not list(REPO.glob("runs/tiny-wb-*")) and not (REPO / "stores/tiny-wb.zarr").exists()


@pytest.fixture
def postgres(tmp_path):
    """A throwaway Postgres cluster on a free loopback port (trust authentication); yields its port. Skipped
    where the Postgres server programs are not installed, except in CI (SIMCAST_REQUIRE_POSTGRES=1, set by
    .ci/run after installing them), where that is a failure."""
    skip = pytest.fail if os.environ.get("SIMCAST_REQUIRE_POSTGRES") == "1" else pytest.skip
    bindir = next((Path(p).parent for p in [shutil.which("pg_ctl")] if p), None) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
    if bindir is None or not (bindir / "initdb").exists():
        skip("no Postgres server programs (initdb, pg_ctl) on this machine")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="simcast-pg-"))  # outside tmp_path: the postgres user must reach it
    if os.geteuid() == 0:  # Postgres refuses to run as root
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            skip("running as root and there is no postgres user to run Postgres as")
        os.chown(folder, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = folder / "data"

    def run(*cmd):
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        yield port
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_prefect_server_on_postgres(postgres, procs, tmp_path):
    """PREFECT_API_DATABASE_CONNECTION_URL puts the server's database in Postgres: a flow run is recorded there."""
    import asyncpg

    async def sql(query: str, database: str = "postgres"):
        conn = await asyncpg.connect(host="127.0.0.1", port=postgres, user="postgres", database=database)
        try:
            return await conn.fetch(query)
        finally:
            await conn.close()

    asyncio.run(sql("CREATE DATABASE prefect"))
    env = start_server(tmp_path, procs, PREFECT_API_DATABASE_CONNECTION_URL=(
        f"postgresql+asyncpg://postgres@127.0.0.1:{postgres}/prefect"))
    root = tmp_path / "simcast"
    env.update(SIMCAST_CATALOG=str(write_tiny_data(root)), SIMCAST_DATA_ROOT=str(root / "data"),
               SIMCAST_STORE_ROOT=str(root / "stores"))
    script = ("import sys; from flows.ingest import ingest_flow; "
              "sys.exit(0 if ingest_flow('tiny-bj', return_state=True).is_completed() else 1)")
    r = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (root / "stores/tiny-bj.zarr").is_dir()
    rows = asyncio.run(sql("SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id", "prefect"))
    assert [(row["name"], row["state_type"]) for row in rows] == [("ingest", "COMPLETED")]
