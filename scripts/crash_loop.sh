#!/usr/bin/env bash
# The kill-and-resume test ten times in a row, each with other kill moments (seeds 0..9).
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in 0 1 2 3 4 5 6 7 8 9; do
  BENCH_CRASH_SEED=$seed .venv/bin/python -m pytest -q -s tests/test_crash.py 2>&1 | grep -E "seed|passed|failed"
done
