# The im-* processes of the local cluster (sourced by up, down and status), in start order:
# im-rest first (it applies the schema migrations), then im-transfer, then the connectors.

# Pid files and logs of the im-* processes: next to the servers' state when IM_RUN_DIR is set (so two
# clusters with their own IM_RUN_DIR and ports never share pid files), else run/cluster.
IM_CLUSTER_DIR="${IM_CLUSTER_DIR:-${IM_RUN_DIR:+$IM_RUN_DIR/cluster}}"
IM_CLUSTER_DIR="${IM_CLUSTER_DIR:-$IM_ROOT/run/cluster}"
IM_REST_PORT="${IM_REST_PORT:-8080}"
IM_REST_ADMIN_PORT="${IM_REST_ADMIN_PORT:-8090}"
IM_TRANSFER_PORT="${IM_TRANSFER_PORT:-9100}"
IM_TRANSFER_ADMIN_PORT="${IM_TRANSFER_ADMIN_PORT:-9190}"
IM_CONNECTOR_PORTS="${IM_CONNECTOR_PORTS:-9000 9001}"   # one replica per port
IM_CONNECTOR_ADMIN_BASE="${IM_CONNECTOR_ADMIN_BASE:-9090}"  # admin port of replica i: base + i

# name|binary|args|client port|admin port (/metrics, /healthz)|readiness path on the admin port (200
# once it can serve: im-rest reaches MySQL and Redis, the transfer owns its shards, a connector has
# a link to a transfer)
im_cluster_processes() {
  local cfg="$IM_ROOT/scripts/cluster" i=0 p
  echo "im-rest|im-rest|--config $cfg/im-rest.yaml --set http.port=$IM_REST_PORT --set admin.port=$IM_REST_ADMIN_PORT --set files.dir=$IM_CLUSTER_DIR/files|$IM_REST_PORT|$IM_REST_ADMIN_PORT|/readyz"
  echo "im-transfer|im-transfer|--config $cfg/im-transfer.yaml --set transfer.port=$IM_TRANSFER_PORT --set admin.port=$IM_TRANSFER_ADMIN_PORT|$IM_TRANSFER_PORT|$IM_TRANSFER_ADMIN_PORT|/readyz"
  for p in $IM_CONNECTOR_PORTS; do
    echo "im-connector-$i|im-connector|--config $cfg/im-connector.yaml --set connector.port=$p --set admin.port=$((IM_CONNECTOR_ADMIN_BASE + i)) --set connector.id=connector-$i|$p|$((IM_CONNECTOR_ADMIN_BASE + i))|/readyz"
    i=$((i + 1))
  done
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
