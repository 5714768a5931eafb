# The im-* processes of the local cluster (sourced by up, down and status).
# Each process: name, binary, config file, port to wait for, health URL.
# Later issues add im-transfer and the im-connector replicas here.

IM_CLUSTER_DIR="${IM_CLUSTER_DIR:-$IM_ROOT/run/cluster}"
IM_REST_PORT="${IM_REST_PORT:-8080}"

# name|binary|args|port|health path
im_cluster_processes() {
  echo "im-rest|im-rest|--config $IM_ROOT/scripts/cluster/im-rest.yaml --set http.port=$IM_REST_PORT|$IM_REST_PORT|/healthz"
}

im_pid_alive() {  # a pid that exists and is not a zombie
  local state
  [ -r "/proc/$1/stat" ] || return 1
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != "Z" ]
}

im_proc_pid() {  # pid of a running cluster process, or nothing
  local f="$IM_CLUSTER_DIR/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if im_pid_alive "$pid"; then echo "$pid"; fi
}

im_wait_http() {  # port path seconds
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    if curl -fsS -m 1 "http://127.0.0.1:$1$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}
