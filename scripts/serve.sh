#!/usr/bin/env bash
# Install edgekv and start the server on ./edgekv-data (RESP on 127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e .
exec edgekv serve "$@"
