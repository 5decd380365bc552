#!/usr/bin/env bash
# Set everything up and run the whole test suite: lint, import contracts, type check, fast unit
# tests, end-to-end tests (which start real llama.cpp servers themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/lint-imports
.venv/bin/mypy src
.venv/bin/python -m pytest -m "not e2e" -q
.venv/bin/python -m pytest -m e2e -q
