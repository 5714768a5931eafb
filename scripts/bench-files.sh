#!/usr/bin/env bash
# Measures file upload and download throughput of im-rest with curl: a SIZE MiB random file
# uploaded (POST /v1/files, streamed with -T) and downloaded (GET /v1/files/{id}) RUNS times each,
# sha256 checked, median printed. Runs its own Redis and MariaDB on free ports in a throwaway
# directory and its own im-rest; touches nothing else.
#   scripts/bench-files.sh [runs=3] [size_mib=50]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${1:-3}; SIZE=${2:-50}

"$IM_ROOT/scripts/build.sh" --target im-rest >/dev/null
IM_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/im-bench-files.XXXXXX")"
IM_REDIS_PORT="$(im_free_port)"
IM_MYSQL_PORT="$(im_free_port)"
export IM_RUN_DIR IM_REDIS_PORT IM_MYSQL_PORT
REST_PID=""
cleanup() {
  [ -n "$REST_PID" ] && kill "$REST_PID" 2>/dev/null && wait "$REST_PID" 2>/dev/null
  "$IM_ROOT/scripts/services.sh" stop redis mysql >/dev/null 2>&1 || true
  rm -rf "$IM_RUN_DIR"
}
trap cleanup EXIT
"$IM_ROOT/scripts/services.sh" start redis mysql >/dev/null
# shellcheck disable=SC1091
source "$IM_RUN_DIR/env"

PORT=$(im_free_port)
"$IM_BUILD_DIR/bin/im-rest" --set http.port="$PORT" --set admin.port="$(im_free_port)" --set files.dir="$IM_RUN_DIR/files" \
  --set log.level=warn --set auth.hash_ops_limit=1 --set auth.hash_mem_limit=8KiB \
  >"$IM_RUN_DIR/rest.log" 2>&1 &
REST_PID=$!
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

URL="http://127.0.0.1:$PORT"
curl -fs -XPOST "$URL/v1/users" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-password"}' >/dev/null
TOKEN=$(curl -fs -XPOST "$URL/v1/sessions" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-password","device_id":"bench"}' |
  sed -E 's/.*"token":"([^"]+)".*/\1/')

mibs() { awk '{ printf "%.1f\n", $1 / 1048576 }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
IN="$IM_RUN_DIR/in.bin"; OUT="$IM_RUN_DIR/out.bin"
: >"$IM_RUN_DIR/up"; : >"$IM_RUN_DIR/down"
echo "files bench: ${SIZE} MiB, $RUNS runs, $(nproc) cores, im-rest http.threads=2, files.dir on $(df --output=fstype "$IM_RUN_DIR" | tail -1)"
for i in $(seq 1 "$RUNS"); do
  head -c "$((SIZE * 1048576))" /dev/urandom >"$IN"  # new content each run: no dedupe shortcut
  sync
  up=$(curl -fsS -T "$IN" -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/octet-stream' \
    -o "$IM_RUN_DIR/up.json" -w '%{speed_upload}' "$URL/v1/files?name=bench-$i.bin" | mibs)
  id=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$IM_RUN_DIR/up.json")
  down=$(curl -fsS -H "Authorization: Bearer $TOKEN" -o "$OUT" -w '%{speed_download}' "$URL/v1/files/$id" | mibs)
  [ "$(sha256sum <"$IN" | cut -d' ' -f1)" = "$(sha256sum <"$OUT" | cut -d' ' -f1)" ] || im_die "sha256 mismatch"
  grep -q "$(sha256sum <"$IN" | cut -d' ' -f1)" "$IM_RUN_DIR/up.json" || im_die "upload answer has another sha256"
  echo "$up" >>"$IM_RUN_DIR/up"; echo "$down" >>"$IM_RUN_DIR/down"
  printf 'run %d: upload %8s MiB/s   download %8s MiB/s   (sha256 ok)\n' "$i" "$up" "$down"
done
printf 'MEDIAN: upload %8s MiB/s   download %8s MiB/s\n' "$(median <"$IM_RUN_DIR/up")" "$(median <"$IM_RUN_DIR/down")"
