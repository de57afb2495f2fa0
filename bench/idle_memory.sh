#!/usr/bin/env bash
# The server's resident memory for N idle connections logged in with an API key: the
# idle part of bench/compare.sh alone, for trying changes quickly.
#   bash bench/idle_memory.sh [path/to/themisdb] [N]   (default: the release build, 10000)
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/themisdb}; N=${2:-10000}
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
THEMIS_ROOT_PASSWORD=pw THEMIS_SERVER_LOG_LEVEL=warn THEMIS_WIRE_PROTOCOL_MAX_CONNECTIONS=$((N+500)) \
  $BIN serve --data-dir "$WORK/data" --bind 127.0.0.1 --port 18810 >/dev/null 2>&1 & PID=$!
sleep 1.5
KEY=$($BIN apikey create --url themis://root:pw@127.0.0.1:18810 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
r0=$(awk '/^VmRSS/ {print $2}' /proc/$PID/status)
$BIN bench --url themis://127.0.0.1:18810 --api-key "$KEY" --op idle -c $N --duration 8 >/dev/null 2>"$WORK/idle.err" & B=$!
for _ in $(seq 1 600); do grep -q '^ready' "$WORK/idle.err" && break; sleep 0.2; done
sleep 2
r1=$(awk '/^VmRSS/ {print $2}' /proc/$PID/status)
wait $B || true
kill $PID; wait 2>/dev/null || true
echo "$N idle: $(( (r1 - r0) / 1024 )) MB ($(( (r1 - r0) / N )) KB each)"
