# The im-* processes of the local cluster (sourced by up, down and status), in start order:
# im-rest first (it applies the schema migrations), then im-transfer, then the connectors.

# Pid files and logs of the im-* processes: next to the servers' state when IM_RUN_DIR is set (so two
# clusters with their own IM_RUN_DIR and ports never share pid files), else run/cluster.
IM_CLUSTER_DIR="${IM_CLUSTER_DIR:-${IM_RUN_DIR:+$IM_RUN_DIR/cluster}}"
IM_CLUSTER_DIR="${IM_CLUSTER_DIR:-$IM_ROOT/run/cluster}"
IM_REST_PORT="${IM_REST_PORT:-8080}"
IM_REST_ADMIN_PORT="${IM_REST_ADMIN_PORT:-8090}"
IM_TRANSFERS="${IM_TRANSFERS:-1}"                             # im-transfer replicas
IM_TRANSFER_PORT="${IM_TRANSFER_PORT:-9100}"                  # replica i: port + i
IM_TRANSFER_ADMIN_PORT="${IM_TRANSFER_ADMIN_PORT:-9190}"      # replica i: admin port + i
IM_CONNECTORS="${IM_CONNECTORS:-2}"                           # im-connector replicas
IM_CONNECTOR_PORT="${IM_CONNECTOR_PORT:-9000}"                # replica i: port + i ...
IM_CONNECTOR_PORTS="${IM_CONNECTOR_PORTS:-$(seq -s ' ' "$IM_CONNECTOR_PORT" $((IM_CONNECTOR_PORT + IM_CONNECTORS - 1)))}"  # ... or this list
IM_CONNECTOR_ADMIN_BASE="${IM_CONNECTOR_ADMIN_BASE:-9090}"  # admin port of replica i: base + i
# IM_SPREAD_HOSTS=1 places every process on a loopback address of its own, like separate hosts:
# transfer i on 127.0.1.(i+1), connector i on 127.0.2.(i+1) (im-rest stays on 127.0.0.1).
IM_SPREAD_HOSTS="${IM_SPREAD_HOSTS:-0}"

im_transfer_host() { if [ "$IM_SPREAD_HOSTS" = 1 ]; then echo "127.0.1.$(($1 + 1))"; else echo 127.0.0.1; fi; }
im_connector_host() { if [ "$IM_SPREAD_HOSTS" = 1 ]; then echo "127.0.2.$(($1 + 1))"; else echo 127.0.0.1; fi; }

# name|binary|args|client address|admin address (/metrics, /healthz)|readiness path on the admin
# address (200 once it can serve: im-rest reaches MySQL and Redis, a transfer reaches MySQL, a
# connector has a link to a transfer)
im_cluster_processes() {
  local cfg="$IM_ROOT/scripts/cluster" i=0 p h
  echo "im-rest|im-rest|--config $cfg/im-rest.yaml --set http.port=$IM_REST_PORT --set admin.port=$IM_REST_ADMIN_PORT --set files.dir=$IM_CLUSTER_DIR/files|127.0.0.1:$IM_REST_PORT|127.0.0.1:$IM_REST_ADMIN_PORT|/readyz"
  for i in $(seq 0 $((IM_TRANSFERS - 1))); do
    h=$(im_transfer_host "$i")
    echo "im-transfer-$i|im-transfer|--config $cfg/im-transfer.yaml --set transfer.id=transfer-$i --set transfer.host=$h --set transfer.port=$((IM_TRANSFER_PORT + i)) --set admin.host=$h --set admin.port=$((IM_TRANSFER_ADMIN_PORT + i))|$h:$((IM_TRANSFER_PORT + i))|$h:$((IM_TRANSFER_ADMIN_PORT + i))|/readyz"
  done
  i=0
  for p in $IM_CONNECTOR_PORTS; do
    h=$(im_connector_host "$i")
    echo "im-connector-$i|im-connector|--config $cfg/im-connector.yaml --set connector.host=$h --set connector.port=$p --set admin.host=$h --set admin.port=$((IM_CONNECTOR_ADMIN_BASE + i)) --set connector.id=connector-$i|$h:$p|$h:$((IM_CONNECTOR_ADMIN_BASE + i))|/readyz"
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

im_wait_http() {  # host:port (or a port on 127.0.0.1) path seconds
  local i a=$1
  case $a in *:*) ;; *) a=127.0.0.1:$a ;; esac
  for i in $(seq 1 $(( $3 * 10 ))); do
    if curl -fsS -m 1 "http://$a$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}
