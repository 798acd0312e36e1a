#!/usr/bin/env bash
# The GPU check of issue 21 in one command, from the repository root of a bare GPU machine (BENCHMARKS.md, GPU):
#
#   bash benchmarks/gpu_check.sh                       # CUDA; results in $OUT (default outputs/gpu-check)
#   WHEELS= PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --device cpu --tiny   # the CPU dry run
#
# It first installs the carried wheels (WHEELS, default .whl; benchmarks/gpu_wheels.sh makes them; empty: none)
# into /tmp/site, then runs benchmarks/gpu_check.py with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS-.whl}
OUT=${OUT:-outputs/gpu-check}
mkdir -p "$OUT"
if [ -n "$WHEELS" ]; then
    t0=$SECONDS
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    echo "installed $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS in $((SECONDS - t0)) s" | tee "$OUT/gpu_check.log"
fi
exec "$PYTHON" benchmarks/gpu_check.py --out "$OUT" "$@"
