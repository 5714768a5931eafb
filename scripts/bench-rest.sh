#!/usr/bin/env bash
# Measures im-rest with wrk: GET /v1/users/me (token validation + one MySQL read) and
# POST /v1/sessions (argon2id verify at the production cost + token insert). Needs the servers of
# ./scripts/up (it starts them if needed) and runs its own im-rest on a spare port with rate
# limits off. Prints one line per run and the median of the runs.
#   scripts/bench-rest.sh [runs=3] [seconds=10] [connections=32] [login_connections=4]
# Logins are CPU- and memory-bound (argon2id, 64 MiB per hash): a few connections saturate the
# cores; more only add queueing (and wrk's 2 s timeout).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${1:-3}; SECS=${2:-10}; CONNS=${3:-32}; LOGIN_CONNS=${4:-4}

"$IM_ROOT/scripts/install-deps.sh" --bench
"$IM_ROOT/scripts/build.sh" >/dev/null
export IM_RUN_DIR="${IM_RUN_DIR:-$IM_ROOT/run/services}"
"$IM_ROOT/scripts/services.sh" start redis mysql >/dev/null
source "$IM_RUN_DIR/env"

PORT=$(im_free_port)
WORK=$(mktemp -d)
"$IM_BUILD_DIR/bin/im-rest" --set http.port="$PORT" --set admin.port="$(im_free_port)" --set rate_limit.login_per_user=0 \
  --set rate_limit.login_per_addr=0 --set rate_limit.register_per_addr=0 --set log.level=warn \
  >"$WORK/rest.log" 2>&1 &
REST_PID=$!
trap 'kill $REST_PID 2>/dev/null; wait $REST_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -fs "localhost:$PORT/healthz" >/dev/null && break; sleep 0.1; done

USER="bench$RANDOM$RANDOM"
curl -fs -XPOST "localhost:$PORT/v1/users" -H 'content-type: application/json' \
  -d "{\"username\":\"$USER\",\"password\":\"bench-password\"}" >/dev/null
TOKEN=$(curl -fs -XPOST "localhost:$PORT/v1/sessions" -H 'content-type: application/json' \
  -d "{\"username\":\"$USER\",\"password\":\"bench-password\",\"device_id\":\"bench\"}" |
  sed -E 's/.*"token":"([^"]+)".*/\1/')
cat >"$WORK/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"$USER","password":"bench-password","device_id":"bench"}'
LUA

# wrk --latency prints "99%  12.34ms"; normalise to milliseconds.
p99_ms() { awk '$1=="99%" { v=$2; if (v ~ /us$/) { sub(/us/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms/,"",v) } else if (v ~ /s$/) { sub(/s/,"",v); v*=1000 } print v }'; }
rps() { awk '/^Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() {  # name, connections, extra wrk args...
  local name=$1 conns=$2; shift 2
  local r p f="$WORK/${name//[^a-z]/_}"
  : >"$f.rps"; : >"$f.p99"
  for i in $(seq 1 "$RUNS"); do
    wrk -t2 -c"$conns" -d"${SECS}s" --latency "$@" >"$WORK/out.txt"
    if grep -q "Socket errors" "$WORK/out.txt"; then grep "Socket errors" "$WORK/out.txt"; fi
    r=$(rps <"$WORK/out.txt"); p=$(p99_ms <"$WORK/out.txt")
    echo "$r" >>"$f.rps"; echo "$p" >>"$f.p99"
    printf '%-22s run %d: %10s req/s  p99 %8s ms\n' "$name" "$i" "$r" "$p"
  done
  printf '%-22s MEDIAN: %10s req/s  p99 %8s ms\n' "$name" "$(median <"$f.rps")" "$(median <"$f.p99")"
}

echo "im-rest bench: $RUNS runs x ${SECS}s, wrk -t2, $(nproc) cores, argon2id ops=2 mem=64MiB"
echo "innodb_flush_log_at_trx_commit=$("$IM_ROOT/scripts/services.sh" mysql -N -e 'SELECT @@innodb_flush_log_at_trx_commit')"
run "GET /v1/users/me" "$CONNS" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/users/me"
run "POST /v1/sessions" "$LOGIN_CONNS" -s "$WORK/login.lua" "http://127.0.0.1:$PORT/v1/sessions"
