#!/usr/bin/env bash
# Download the wheels the bare GPU machine needs (benchmarks/gpu_wheels.txt, for CPython 3.12 on x86_64 Linux)
# and build simcast's own wheel, into .whl/ (git ignores it). The GPU check installs them from there:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#
#   bash benchmarks/gpu_wheels.sh            # download (a no-op for wheels already there), then print the total size
#   bash benchmarks/gpu_wheels.sh --print    # only print the pip commands
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PYTHON=${PYTHON:-.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
DEST=${WHEEL_DIR:-.whl}

mapfile -t REQUIREMENTS < <(grep -v '^\s*#' benchmarks/gpu_wheels.txt | grep -v '^\s*$')
DOWNLOAD=("$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12
          --implementation cp --abi cp312 --abi abi3 --abi none
          --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
          --platform any -d "$DEST" "${REQUIREMENTS[@]}")
OWN=("$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$DEST" .)

if [ "${1:-}" = "--print" ]; then
    printf '%q ' "${DOWNLOAD[@]}"; echo
    printf '%q ' "${OWN[@]}"; echo
    exit 0
fi
mkdir -p "$DEST"
"${DOWNLOAD[@]}"
rm -f "$DEST"/simcast-*.whl
"${OWN[@]}"
rm -rf build  # setuptools' build folder
echo "$(ls "$DEST"/*.whl | wc -l) wheels in $DEST, $(du -cb "$DEST"/*.whl | tail -1 | cut -f1) bytes"
