#!/usr/bin/env bash
# The kill-and-resume test ten times in a row, each with other kill moments (seeds 0..9);
# each kill also checks that the killed run left no process behind. Stops at the first
# failure and prints its report.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for seed in 0 1 2 3 4 5 6 7 8 9; do
  if ! BENCH_CRASH_SEED=$seed .venv/bin/python -m pytest -q -s \
      tests/test_crash.py::test_kill_and_resume_gives_the_uninterrupted_table >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "crash loop: seed $seed failed"
    exit 1
  fi
  grep -E "^seed|passed" "$log"
done
echo "crash loop: 10 seeds passed"
