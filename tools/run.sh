#!/usr/bin/env bash
# make run: the simulator (unless UPSTREAM is set) and Envoy with costguard.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
conf=$(mktemp -t costguard-envoy.XXXXXX.yaml)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$conf"
}
trap cleanup EXIT INT TERM

upstream=${UPSTREAM:-}
if [[ -z "$upstream" ]]; then
  target/release/openai-sim --port 8080 &
  pids+=($!)
  upstream=http://127.0.0.1:8080
fi
.venv/bin/python tools/envoyconf.py --upstream "$upstream" -o "$conf"
echo "costguard: Envoy on http://127.0.0.1:10000 -> $upstream (admin http://127.0.0.1:9901)"
.venv/bin/envoy -c "$conf" --concurrency 2 --log-level warn --component-log-level wasm:info &
pids+=($!)
wait -n "${pids[@]}"
