#!/usr/bin/env bash
# ThemisDB side by side with Redis and PostgreSQL on this machine (issue 7).
#
#   bash bench/compare.sh            # 10 s per cell
#   DURATION=5 bash bench/compare.sh
#
# Installs what it needs from Debian's packages (redis-server, postgresql) when
# missing, builds ThemisDB in release mode, starts every server on loopback with its
# data in a temp dir, runs ThemisDB's workloads (`themisdb bench`) and the peers' own
# tools at the same concurrency, and prints one table of ops/s with the ratios.
# Everything it starts is stopped on exit.
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=50
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/themis-compare.XXXXXX)
chmod 755 "$WORK"
PIDS=()
PG_BIN=""
PG_DATA="$WORK/pg"

say() { printf '%s\n' "$*" >&2; }

cleanup() {
  for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$PG_BIN" ] && [ -d "$PG_DATA" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- what is needed -------------------------------------------------------------
need_pkgs=()
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || need_pkgs+=(redis-server redis-tools)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v pgbench >/dev/null || need_pkgs+=(postgresql postgresql-contrib)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]} from Debian's packages"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

say "building themisdb (release)"
(cd "$ROOT" && cargo build --release --locked -q -p themisdb)
THEMISDB="$ROOT/target/release/themisdb"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; say "nothing listens on $1"; exit 1; }

# ---- servers ----------------------------------------------------------------------
IDLE=${IDLE_CONNECTIONS:-10000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((IDLE + 1000)) ]; then
  say "only $(ulimit -n) file descriptors: measuring $(( $(ulimit -n) - 1000 )) idle connections"
  IDLE=$(( $(ulimit -n) - 1000 ))
fi
TPORT=$(free_port)
mkdir -p "$WORK/themis"
THEMIS_ROOT_PASSWORD=compare THEMIS_SERVER_LOG_LEVEL=warn \
  THEMIS_WIRE_PROTOCOL_MAX_CONNECTIONS=$((IDLE + 500)) \
  "$THEMISDB" serve --data-dir "$WORK/themis" --bind 127.0.0.1 --port "$TPORT" >"$WORK/themis.log" 2>&1 &
TPID=$!
PIDS+=($TPID)
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$WORK" --save "" --appendonly no \
  --daemonize no --logfile "$WORK/redis.log" &
PIDS+=($!)
RAOF=$(free_port)
mkdir -p "$WORK/redis-aof"
redis-server --port "$RAOF" --bind 127.0.0.1 --dir "$WORK/redis-aof" --save "" \
  --appendonly yes --appendfsync always --daemonize no --logfile "$WORK/redis-aof.log" &
PIDS+=($!)
PPORT=$(free_port)
mkdir -p "$PG_DATA"; [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DATA"
as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/log" -w \
  -o "-p $PPORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=200 -c synchronous_commit=on -c fsync=on" start >/dev/null
wait_port "$TPORT"; wait_port "$RPORT"; wait_port "$RAOF"

PSQL=(as_postgres psql -q -h 127.0.0.1 -p "$PPORT" -U postgres -d postgres)
PGBENCH=(as_postgres pgbench -h 127.0.0.1 -p "$PPORT" -U postgres -n -c "$CONNS" -j 2 -T "$DURATION" postgres)
"${PSQL[@]}" -c "CREATE TABLE kv (k text PRIMARY KEY, doc jsonb NOT NULL);
  INSERT INTO kv SELECT 'k' || i, jsonb_build_object('_key', 'k' || i, 'n', i, 'name', 'user-' || i)
  FROM generate_series(0, 9999) i;
  CREATE TABLE ins (id bigserial PRIMARY KEY, doc jsonb NOT NULL);"
printf '\\set id random(0, 9999)\nSELECT doc FROM kv WHERE k = '"'"'k'"'"' || :id;\n' >"$WORK/get.sql"
printf 'INSERT INTO ins (doc) VALUES ('"'"'{"n": 1, "name": "user-1"}'"'"');\n' >"$WORK/insert.sql"
chmod 644 "$WORK"/*.sql

# ---- measurements -------------------------------------------------------------------
TURL="themis://root:compare@127.0.0.1:$TPORT"
themis() { # op in_flight [url query] -> ops/s
  "$THEMISDB" bench --url "$TURL/${3:-}" --op "$1" -c "$CONNS" -i "$2" --duration "$DURATION" --json 2>/dev/null |
    python3 -c 'import json,sys; print(round(json.loads(sys.stdin.readlines()[-1])["ops_per_sec"]))'
}
themis_p99() { # op in_flight rate -> p99 in us (open loop)
  "$THEMISDB" bench --url "$TURL" --op "$1" -c "$CONNS" -i "$2" --rate "$3" --duration "$DURATION" --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])["p99_us"])'
}
redis() { # port test pipeline -> requests/s of the test's (last) line
  redis-benchmark -h 127.0.0.1 -p "$1" -t "$2" -c "$CONNS" -P "$3" -r 10000 -n "$4" -q 2>/dev/null |
    tr '\r' '\n' | grep -i "requests per second" | tail -1 | sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' | cut -d. -f1
}
pgb() { # script -> tps
  "${PGBENCH[@]}" -M prepared -f "$WORK/$1" 2>/dev/null | grep -E '^tps' | head -1 | sed -E 's/tps = ([0-9.]+).*/\1/' | cut -d. -f1
}
ratio() { python3 -c "print(f'{$1/$2:.2f}' if $2 else 'n/a')"; }

say "filling"
redis-benchmark -h 127.0.0.1 -p "$RPORT" -t set -r 10000 -n 200000 -c "$CONNS" -q >/dev/null 2>&1
"$THEMISDB" bench --url "$TURL" --op get -c 4 -n 1000 >/dev/null 2>&1

say "measuring ($DURATION s per ThemisDB/pgbench cell)"
N1=$((DURATION * 150000)); N16=$((DURATION * 1000000)); NAOF=$((DURATION * 20000))
t_get1=$(themis get 1);       r_get1=$(redis "$RPORT" get 1 "$N1");   p_get1=$(pgb get.sql)
# Before the inserts: their flushes and compactions would land in this measurement.
t_p99=$(themis_p99 get 1 $((t_get1 / 2)))
t_get16=$(themis get 16);     r_get16=$(redis "$RPORT" get 16 "$N16")
t_ins1=$(themis insert 1);    t_ins1_nokeys=$(themis insert 1 "?retry_writes=false")
    r_ins1=$(redis "$RAOF" set 1 "$NAOF");  p_ins1=$(pgb insert.sql)
t_ping=$(themis ping 1);      r_ping=$(redis "$RPORT" ping_mbulk 1 "$N1")

# Idle connections: the server's resident memory before and while IDLE clients
# (logged in with an API key: no bcrypt per connection) sit idle.
say "opening $IDLE idle connections"
KEY=$("$THEMISDB" apikey create --url "$TURL" --name compare --json 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
rss() { awk '/^VmRSS/ {print $2}' "/proc/$TPID/status"; }
rss0=$(rss)
"$THEMISDB" bench --url "$TURL" --api-key "$KEY" --op idle -c "$IDLE" --duration 20 \
  >/dev/null 2>"$WORK/idle.err" &
IDLE_PID=$!
for _ in $(seq 1 600); do grep -q '^ready' "$WORK/idle.err" && break; sleep 0.2; done
grep -q '^ready' "$WORK/idle.err" || { say "the idle connections did not open:"; cat "$WORK/idle.err" >&2; exit 1; }
sleep 2
rss1=$(rss)
wait "$IDLE_PID" || true
idle_mb=$(python3 -c "print(f'{($rss1 - $rss0) / 1024:.1f}')")

# ---- the table -------------------------------------------------------------------------
printf '\n%s\n' "ThemisDB vs Redis $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') and PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), $(nproc) cores, $DURATION s per cell, $CONNS connections"
printf '| %-36s | %14s | %-44s | %10s | %6s |\n' "ThemisDB workload" "ThemisDB ops/s" "peer and command" "peer ops/s" "ratio"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..38})" "$(printf -- '-%.0s' {1..15}):" "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..11}):" "$(printf -- '-%.0s' {1..7}):"
row() { printf '| %-36s | %14s | %-44s | %10s | %6s |\n' "$1" "$2" "$3" "$4" "$(ratio "$2" "$4")"; }
row "get, 50 x 1"                 "$t_get1"  "redis-benchmark -t get -c 50"               "$r_get1"
row "get, 50 x 1"                 "$t_get1"  "pgbench -S -M prepared -c 50 (JSONB by key)" "$p_get1"
row "get, 50 x 16"                "$t_get16" "redis-benchmark -t get -c 50 -P 16"         "$r_get16"
row "insert (durable), 50 x 1"    "$t_ins1"  "pgbench JSONB insert -c 50, sync commit"   "$p_ins1"
row "insert (durable), 50 x 1"    "$t_ins1"  "redis SET -c 50, appendfsync always"        "$r_ins1"
row "same, retry_writes=false"     "$t_ins1_nokeys" "pgbench JSONB insert -c 50, sync commit" "$p_ins1"
row "ping, 50 x 1"                "$t_ping"  "redis-benchmark -t ping_mbulk -c 50"        "$r_ping"
printf '| %-36s | %14s | %-44s | %10s | %6s |\n' "get/insert over ThemisDB's HTTP API" "n/a" "(no HTTP API yet)" "" ""
printf '\n%s\n' "$IDLE idle authenticated connections: +$idle_mb MB resident on the server ($((rss0 / 1024)) -> $((rss1 / 1024)) MB; target < 100 MB for 10,000)"
printf '%s\n' "p99 of get at 50 x 1, open loop at half the peak ($((t_get1 / 2)) ops/s): ${t_p99} us (target < 1000 us)"
