#!/usr/bin/env bash
# The GPU check of issue 12 in one command (see bench/README.md, "gpu_check.sh").
#
#   bash bench/gpu_check.sh [--out DIR] [--budget-s S]   # on the lent GPU machine: <= 8 minutes
#   bash bench/gpu_check.sh --dry-run                    # anywhere: every part on CPU, tiny, < 1 minute
#   bash bench/gpu_check.sh --prepare                    # here, once: fill .gpucheck/ (data, checkpoint)
#
# Runs with the machine's own python3 (PYTHON=... to choose another). pydantic and pytest come from the
# carried .whl/ folder when the interpreter lacks them; the results JSON goes to bench/results/ and --out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
if [[ "${1:-}" == "--prepare" ]]; then
    shift
    exec "$PY" bench/gpu_check_data.py "$@"
fi
exec "$PY" bench/gpu_check.py "$@"
