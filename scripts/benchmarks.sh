#!/usr/bin/env bash
# Regenerate every figure in docs/benchmarks.md. Run it on a quiet machine: nothing else busy,
# no other benchmark, the same machine for every bench. About 20 minutes without the reasoning
# bench. Results land in out/bench/ (BENCH_OUT): NAME.json (all numbers and the run's machine,
# date and commit), NAME.png, NAME.md (the tables, to paste into docs/benchmarks.md).
#
# The reasoning bench needs a real model server (e.g. vLLM serving Qwen3) and runs only when
# BENCH_REASONING_ENDPOINT (its /v1 URL), BENCH_REASONING_MODEL (model id) and
# BENCH_REASONING_FAMILY (qwen3, deepseek, gpt-oss, openai) are set; optional:
# BENCH_REASONING_LIMIT (questions, default 700), BENCH_REASONING_CONCURRENCY (default 16),
# BENCH_REASONING_MAX_TOKENS (default 4096), BENCH_REASONING_API_KEY_ENV (env var with its key).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_OUT:-out/bench}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

scripts/setup.sh
scripts/install_wrk.sh
# The systems compared against, pinned. LiteLLM gets a virtual environment of its own: its pins
# would downgrade packages in semrouter's.
.venv/bin/python -m pip --disable-pip-version-check -q install 'semantic-router==1.1.1'
# The Berkeley Function-Calling Leaderboard's data (bench tools) is in this wheel; its pins would
# downgrade numpy and the bench reads only its data files, so no dependencies.
.venv/bin/python -m pip --disable-pip-version-check -q install --no-deps 'bfcl-eval==2026.3.23'
# The jailbreak guard's baseline (bench guards): TF-IDF + logistic regression, pinned.
.venv/bin/python -m pip --disable-pip-version-check -q install 'prompt-guardrail==1.0.1'
LITELLM_VENV=.cache/bench/litellm-venv
if [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
  "$PYTHON" -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/python" -m pip --disable-pip-version-check -q install 'litellm[proxy]==1.106.2'
fi

.venv/bin/semrouter bench overhead --output "$OUT/overhead.json" | tee "$OUT/overhead.md"
.venv/bin/semrouter bench classify --output "$OUT/classify.json" | tee "$OUT/classify.md"
.venv/bin/semrouter bench tools --output "$OUT/tools.json" | tee "$OUT/tools.txt"
.venv/bin/semrouter bench cache --output "$OUT/cache.json" | tee "$OUT/cache.md"
.venv/bin/semrouter bench guards --output "$OUT/guards.json"
.venv/bin/semrouter bench conversations --output "$OUT/conversations.json"

if [ -z "${BENCH_REASONING_ENDPOINT:-}" ]; then
  echo "reasoning bench skipped: set BENCH_REASONING_ENDPOINT, _MODEL and _FAMILY" >&2
  exit 0
fi
: "${BENCH_REASONING_MODEL:?set BENCH_REASONING_MODEL}" "${BENCH_REASONING_FAMILY:?set BENCH_REASONING_FAMILY}"
# semrouter in front of the same server: both configured models are that model, both told to
# think or not in its family's dialect, so the routed arm differs only by semrouter's decisions.
CONFIG="$OUT/reasoning-config.yaml"
.venv/bin/python - "$BENCH_REASONING_FAMILY" >"$CONFIG" <<'PY'
import sys

import yaml

config = yaml.safe_load(open("config/default.yaml", encoding="utf-8"))
for model in config["models"]:
    model["reasoning_family"] = sys.argv[1]
yaml.safe_dump(config, sys.stdout, sort_keys=False)
PY
PORT=${BENCH_ROUTER_PORT:-8090}
SEMROUTER_FAST_URL=$BENCH_REASONING_ENDPOINT SEMROUTER_REASONER_URL=$BENCH_REASONING_ENDPOINT \
SEMROUTER_FAST_MODEL_ID=$BENCH_REASONING_MODEL SEMROUTER_REASONER_MODEL_ID=$BENCH_REASONING_MODEL \
  .venv/bin/semrouter serve --config "$CONFIG" --port "$PORT" --log-level warning \
  >"$OUT/reasoning-semrouter.log" 2>&1 &
ROUTER_PID=$!
trap 'kill "$ROUTER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null || {
  echo "semrouter serve did not start: see $OUT/reasoning-semrouter.log" >&2
  exit 1
}
KEY_ARGS=()
[ -n "${BENCH_REASONING_API_KEY_ENV:-}" ] && KEY_ARGS=(--api-key-env "$BENCH_REASONING_API_KEY_ENV")
.venv/bin/semrouter bench reasoning \
  --endpoint "$BENCH_REASONING_ENDPOINT" --model "$BENCH_REASONING_MODEL" \
  --family "$BENCH_REASONING_FAMILY" --router "http://127.0.0.1:$PORT" \
  --dataset ../shared/data/mmlu_pro/questions.jsonl --split validation \
  --limit "${BENCH_REASONING_LIMIT:-700}" --concurrency "${BENCH_REASONING_CONCURRENCY:-16}" \
  --max-tokens "${BENCH_REASONING_MAX_TOKENS:-4096}" "${KEY_ARGS[@]}" \
  --output "$OUT/reasoning.json" | tee "$OUT/reasoning.md"
