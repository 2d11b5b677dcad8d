#!/usr/bin/env bash
# The kill-and-resume test ten times in a row, each with other kill moments (seeds 0..9);
# each kill also checks that the killed run left no process behind. Stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in 0 1 2 3 4 5 6 7 8 9; do
  BENCH_CRASH_SEED=$seed .venv/bin/python -m pytest -q -s \
    tests/test_crash.py::test_kill_and_resume_gives_the_uninterrupted_table 2>&1 | grep -E "seed|passed|failed"
done
echo "crash loop: 10 seeds passed"
