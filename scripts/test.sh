#!/usr/bin/env bash
# Install edgekv with its test and benchmark extras (the report's smoke test draws plots)
# and run the whole test suite.
# pytest exits 5 when it collects nothing; treat that (and any failure) as a failed run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e '.[test,bench]'
set +e
python3 -m pytest -q -p no:cacheprovider --timeout=600 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "no tests were collected: failing the run" >&2
  exit 1
fi
exit "$status"
