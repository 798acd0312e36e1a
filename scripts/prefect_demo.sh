#!/usr/bin/env bash
# The Prefect route in one command, for a machine with nothing else running:
#   local Prefect server (embedded SQLite) -> process work pool -> deployments from prefect.yaml -> a worker
#   -> `prefect deployment run weatherbench-train/weatherbench-train` (the bundled ERA5 UK sample) -> the report.
#
# Usage: scripts/prefect_demo.sh [--epochs N] [--dataset NAME] [--port PORT] [--keep]
#   --epochs N     train N epochs instead of the catalog's (6 for era5-uk-t2m: minutes on 2 CPU cores)
#   --dataset NAME a WeatherBench-kind catalog entry (default era5-uk-t2m, bundled: no downloads)
#   --port PORT    the server's port on 127.0.0.1 (default 4200; a Prefect server already there is reused)
#   --keep         leave the server and worker running afterwards, to look around in the UI
# Logs: outputs/prefect-demo/{server,deploy,worker}.log. Environment: VENV (default .venv), PREFECT_HOME (default
# ~/.prefect), SIMCAST_* as for every simcast command.
set -euo pipefail
set -m  # background jobs in process groups of their own, with SIGINT not ignored (stopped below by group)
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PREFECT="$VENV/bin/prefect"
PORT=4200 KEEP=0 EPOCHS="" DATASET=era5-uk-t2m
while [[ $# -gt 0 ]]; do
  case "$1" in
    --epochs) EPOCHS="$2"; shift 2 ;;
    --dataset) DATASET="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x "$PREFECT" ]] || { echo "no $PREFECT: run 'make venv' first" >&2; exit 1; }

export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_WORKER_QUERY_SECONDS=5 COLUMNS=${COLUMNS:-160}
LOGS=outputs/prefect-demo
mkdir -p "$LOGS"
POOL=simcast-process
started=()

healthy() { "$VENV/bin/python" - "$PREFECT_API_URL" <<'EOF'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1] + "/health", timeout=3).status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

stop() {
  [[ $KEEP == 1 ]] && return
  for pid in "${started[@]}"; do  # the worker first, then the server (each started in its own process group)
    kill -INT -- "-$pid" 2>/dev/null || continue
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
trap stop EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if healthy; then
  step "a Prefect server already answers at $PREFECT_API_URL: using it"
else
  step "1. start the local Prefect server on 127.0.0.1:$PORT (SQLite under ${PREFECT_HOME:-~/.prefect})"
  "$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$LOGS/server.log" 2>&1 &
  server=$!
  disown
  started=("$server")
  for _ in $(seq 180); do healthy && break; kill -0 "$server" 2>/dev/null || { cat "$LOGS/server.log"; exit 1; }; sleep 1; done
  healthy || { echo "the server did not start; see $LOGS/server.log" >&2; exit 1; }
fi

step "2. create the process work pool '$POOL'"
"$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1 || "$PREFECT" work-pool create "$POOL" --type process

step "3. deploy every flow in prefect.yaml (log: $LOGS/deploy.log)"
"$PREFECT" --no-prompt deploy --all >"$LOGS/deploy.log" 2>&1 || { tail -n 30 "$LOGS/deploy.log" >&2; exit 1; }
"$PREFECT" deployment ls

step "4. start a worker for '$POOL' (log: $LOGS/worker.log)"
"$PREFECT" worker start --pool "$POOL" >"$LOGS/worker.log" 2>&1 &
started=("$!" "${started[@]}")  # stopped in this order: the worker, then the server
disown

step "5. prefect deployment run weatherbench-train/weatherbench-train -p dataset=$DATASET${EPOCHS:+ -p epochs=$EPOCHS}"
echo "   watch it at http://127.0.0.1:$PORT/runs (flow run, task runs, logs, artifacts)"
params=(-p "dataset=$DATASET")
[[ -n "$EPOCHS" ]] && params+=(-p "epochs=$EPOCHS")
"$PREFECT" deployment run weatherbench-train/weatherbench-train "${params[@]}" --watch --watch-interval 5 \
  | grep -E "Created flow run|Flow run finished|prefect.flow-run" || true

run_dir=$(ls -d "${SIMCAST_RUNS_ROOT:-runs}/$DATASET"-* 2>/dev/null | sort | tail -n 1)
if [[ -n "$run_dir" && -f "$run_dir/report/report.html" ]]; then
  step "6. the report"
  echo "   $(cd "$run_dir/report" && pwd)/report.html  (maps in report/maps/, scores in eval-test/metrics.json)"
  echo "   artifacts in the UI: http://127.0.0.1:$PORT/artifacts (${DATASET//./-}-training, -metrics, -report)"
else
  echo "the training run did not finish; see the flow run in the UI and $LOGS/worker.log" >&2
  exit 1
fi
if [[ $KEEP == 1 ]]; then
  echo
  echo "server and worker keep running (process groups ${started[*]}); stop them with: kill -INT -- -PID"
fi
