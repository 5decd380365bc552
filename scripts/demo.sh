#!/usr/bin/env bash
# Set everything up, start the local llama.cpp backends, and run the router on :8080
# (override with PORT=...). Stop with Ctrl-C; `scripts/backends.sh stop` stops the backends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/backends.sh start
exec .venv/bin/semrouter serve --config config/default.yaml --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}"
