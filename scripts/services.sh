#!/usr/bin/env bash
# Runs the backing servers of the IM backend (Redis, MariaDB, RabbitMQ, OpenLDAP slapd) as plain
# processes on 127.0.0.1, with all their state under ONE run directory. No systemd, no `service`.
#
#   scripts/services.sh start|stop|status [redis] [mysql] [rabbitmq] [ldap]   (no names = all four)
#   scripts/services.sh clean               stop everything and delete the run dir (all data)
#   scripts/services.sh rabbitmqctl ARGS... rabbitmqctl against this run's node
#   scripts/services.sh mysql ARGS...       mariadb client as MariaDB root over this run's socket
#
# status prints one line per server and exits 0 if all requested are running, 3 otherwise.
# After a successful start, $IM_RUN_DIR/env holds sourceable `export IM_...=...` lines (ports, users,
# passwords, db, mysql socket, ldap url/base). Data survives stop/start; `clean` removes it.
# Two runs with different IM_RUN_DIR and ports do not collide (own configs, pids, epmd, cookie).
#
# Environment (defaults):
#   IM_RUN_DIR=<repo>/run/services  IM_SERVICES_TIMEOUT=60 (seconds to wait for a server to answer)
#   IM_REDIS_PORT=6379 IM_MYSQL_PORT=3306 IM_RABBITMQ_PORT=5672 IM_LDAP_PORT=3890 IM_EPMD_PORT=4369
#   IM_RABBITMQ_DIST_PORT=IM_RABBITMQ_PORT+20000   IM_RABBITMQ_MEMORY=512MB (memory high watermark)
#   IM_MYSQL_DB=im IM_MYSQL_USER=im IM_MYSQL_PASSWORD=im_pass
#     granted ALL on IM_MYSQL_DB and on every database matching `im\_%` (throwaway test dbs), as
#     'im'@'127.0.0.1' (TCP; skip-name-resolve) and 'im'@'localhost' (socket). MariaDB root has no
#     password, reachable over the unix socket in the run dir (`scripts/services.sh mysql`).
#   IM_RABBITMQ_USER=im IM_RABBITMQ_PASSWORD=im_pass  administrator, full rights on vhost /; no guest
#   IM_LDAP_BASE=dc=im,dc=test IM_LDAP_ADMIN_DN=cn=admin,<base> IM_LDAP_ADMIN_PASSWORD=admin_pass
#   IM_LDAP_ALLOW_ANON_DN=0  1 = `allow bind_anon_dn`: slapd itself accepts a DN with an EMPTY
#     password (as anonymous), so a test can prove the application refuses empty passwords itself.
#
# Seed LDAP directory (scripts/services/seed.ldif.in; loaded once, when the LDAP data dir is new):
#   DN (under IM_LDAP_BASE)        password     notes
#   cn=reader,ou=services          reader_pass  service account: searches/reads people, never passwords
#   uid=alice,ou=people            alice_pass   cn "Alice Liddell", mail alice@im.test
#   uid=bob,ou=people              bob_pass     cn "Bob Builder",   mail bob@im.test
#   uid=carol,ou=people            carol_pass   cn "Carol Danvers", mail carol@im.test
#   uid=dave,ou=people             dave_pass    cn/displayName "Dave (QA) *star*" (filter metachars)
#   People are inetOrgPerson (uid, cn, sn, displayName, mail, userPassword as {SSHA}). Anyone may
#   bind; anonymous reads no people; a user reads their own entry; userPassword is auth-only.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATES=$HERE/services
RABBIT_BIN=/usr/lib/rabbitmq/bin

: "${IM_RUN_DIR:=$(dirname "$HERE")/run/services}"
case $IM_RUN_DIR in /*) ;; *) IM_RUN_DIR=$PWD/$IM_RUN_DIR ;; esac
: "${IM_REDIS_PORT:=6379}" "${IM_MYSQL_PORT:=3306}" "${IM_RABBITMQ_PORT:=5672}" "${IM_LDAP_PORT:=3890}"
: "${IM_EPMD_PORT:=4369}" "${IM_RABBITMQ_DIST_PORT:=$((IM_RABBITMQ_PORT + 20000))}"
: "${IM_MYSQL_DB:=im}" "${IM_MYSQL_USER:=im}" "${IM_MYSQL_PASSWORD:=im_pass}"
: "${IM_RABBITMQ_USER:=im}" "${IM_RABBITMQ_PASSWORD:=im_pass}" "${IM_RABBITMQ_MEMORY:=512MB}"
: "${IM_LDAP_BASE:=dc=im,dc=test}" "${IM_LDAP_ADMIN_PASSWORD:=admin_pass}" "${IM_LDAP_ALLOW_ANON_DN:=0}"
: "${IM_LDAP_ADMIN_DN:=cn=admin,$IM_LDAP_BASE}"
TIMEOUT=${IM_SERVICES_TIMEOUT:-60}
STOP_TIMEOUT=30                                    # seconds before SIGTERM/SIGINT becomes SIGKILL
ALL=(redis mysql rabbitmq ldap)
AS_ROOT=(); [ "$(id -u)" -eq 0 ] && AS_ROOT=(--user=root)   # mariadbd refuses root without it
RABBIT_NODE=rabbit_${IM_RABBITMQ_PORT}@localhost    # unique per port: parallel runs never share one
MYSQL_SOCKET=$IM_RUN_DIR/mysql/mysqld.sock
export LDAPNOINIT=1                                 # ldap* tools: ignore /etc/ldap/ldap.conf, ~/.ldaprc

# ---------------------------------------------------------------------------------------- helpers
say() { printf '%s\n' "$*"; }
warn() { printf 'services: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

# fail_logs MESSAGE LOG...: the verbose half of "quiet on success".
fail_logs() {
  local f; warn "$1"; shift
  for f; do [ -s "$f" ] && { printf -- '----- last lines of %s -----\n' "$f"; tail -n 40 "$f"; } >&2; done
  warn "(servers that did start keep running: scripts/services.sh stop)"; exit 1
}

# Process state letter (R, S, Z, ...), empty when gone. Daemons re-parented to PID 1 linger as zombies
# for a second or two on these machines, so `kill -0` is no liveness test: a zombie counts as gone.
proc_state() { local l; read -r l 2>/dev/null <"/proc/$1/stat" || return 0; l=${l##*) }; printf '%s' "${l%% *}"; }
alive() { local s; s=$(proc_state "$1"); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }

# Pid file contents if it holds a number (RabbitMQ writes it without a trailing newline).
read_pid() { local pid=""; [ -s "$1" ] && { read -r pid <"$1" || true; }; [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"; }
# pid_from PIDFILE COMM: the pid if it is alive and really that program (guards against pid reuse).
pid_from() {
  local pid; pid=$(read_pid "$1") && alive "$pid" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  printf '%s\n' "$pid"
}

listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
require_free() {
  listening "$2" || return 0
  die "$1: port $2 is already in use by something else (not by this run in $IM_RUN_DIR):
$(ss -Hltnp "sport = :$2" 2>/dev/null)
  pick another port (IM_*_PORT) or stop what holds it"
}

# await NAME PORT PIDFILE LOG CMD...: polls CMD until it succeeds; fails loudly on a timeout or
# when the process in PIDFILE dies first.
await() {
  local name=$1 port=$2 pidfile=$3 log=$4 deadline=$((SECONDS + TIMEOUT)) pid; shift 4
  until "$@" >/dev/null 2>&1; do
    if pid=$(read_pid "$pidfile") && ! alive "$pid"; then fail_logs "$name: the server exited during start-up" "$log"; fi
    [ "$SECONDS" -lt "$deadline" ] || fail_logs "$name: no answer on 127.0.0.1:$port within ${TIMEOUT}s" "$log"
    sleep 0.05
  done
}

clock_start() { T0=${EPOCHREALTIME//[!0-9]/}; }
elapsed() { local us=$((${EPOCHREALTIME//[!0-9]/} - T0)); printf '%d.%02ds' $((us / 1000000)) $((us % 1000000 / 10000)); }

# render TEMPLATE OUT KEY=VALUE...: copies TEMPLATE to OUT with every @KEY@ replaced.
render() {
  local text kv; text=$(<"$1"); local out=$2; shift 2
  for kv; do text=${text//"@${kv%%=*}@"/"${kv#*=}"}; done   # quoted: no & expansion (bash 5.2)
  printf '%s\n' "$text" >"$out"
}

# All descendants of a pid (Erlang's erl_child_setup, inet_gethost, ...), to be sure none survives.
descendants() {
  ps -e -o pid= -o ppid= | awk -v root="$1" '{ up[$1] = $2 }
    END { for (p in up) { q = p; while ((q in up) && q != root && q > 1) q = up[q]; if (q == root && p != root) print p } }'
}

# stop_proc NAME PIDFILE COMM SIGNAL PORT...: signal, wait until gone and the ports are closed,
# escalate to SIGKILL after STOP_TIMEOUT seconds. Not running: nothing to do.
stop_proc() {
  local name=$1 pidfile=$2 comm=$3 sig=$4 pid kids p deadline; shift 4
  if ! pid=$(pid_from "$pidfile" "$comm"); then rm -f "$pidfile"; say "$name: not running"; return 0; fi
  kids=$(descendants "$pid")
  kill "-$sig" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ "$sig" = KILL ] && die "$name: pid $pid survives SIGKILL"
      warn "$name: pid $pid still alive ${STOP_TIMEOUT}s after SIG$sig, sending SIGKILL"
      sig=KILL; kill -KILL "$pid" 2>/dev/null || true; deadline=$((SECONDS + 10))
    fi
    sleep 0.05
  done
  deadline=$((SECONDS + 3))           # children normally exit with their parent; give them a moment
  for p in $kids; do
    while alive "$p" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  rm -f "$pidfile"
  deadline=$((SECONDS + 10))
  for p; do
    while listening "$p"; do
      [ "$SECONDS" -ge "$deadline" ] && die "$name: port $p still listens after stop: $(ss -Hltnp "sport = :$p")"
      sleep 0.05
    done
  done
  say "$name: stopped (pid $pid)"
}

status_line() { printf '%-9s %-8s pid=%-8s port=%s\n' "$@"; }
status_of() { # NAME PIDFILE COMM PORT: one status line; 1 when not running
  local pid
  if pid=$(pid_from "$2" "$3"); then status_line "$1" running "$pid" "$4"; else status_line "$1" stopped - "$4"; return 1; fi
}
started() { # NAME PIDFILE COMM PORT LOG: the one line of a successful start
  local pid; pid=$(pid_from "$2" "$3") || fail_logs "$1: answers, but no live pid in $2" "$5"
  say "$1: started pid=$pid port=$4 in $(elapsed)"
}

sql_str() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }   # SQL string literal
sh_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }                      # shell word for the env file

# ------------------------------------------------------------------------------------------ redis
redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$IM_REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
redis_start() {
  local d=$IM_RUN_DIR/redis pid; mkdir -p "$d"; clock_start
  if pid=$(pid_from "$d/redis.pid" redis-server); then say "redis: already running pid=$pid port=$IM_REDIS_PORT"; return; fi
  rm -f "$d/redis.pid"; require_free redis "$IM_REDIS_PORT"
  # Default RDB snapshots (and one at shutdown) in $d keep the data across restarts.
  # shellcheck disable=SC2094  # redis appends to its log itself; we only catch early stderr there
  redis-server --bind 127.0.0.1 --port "$IM_REDIS_PORT" --daemonize yes --pidfile "$d/redis.pid" \
    --dir "$d" --logfile "$d/redis.log" </dev/null >>"$d/redis.log" 2>&1 9>&- ||
    fail_logs "redis: redis-server failed to start" "$d/redis.log"
  await redis "$IM_REDIS_PORT" "$d/redis.pid" "$d/redis.log" redis_ping
  started redis "$d/redis.pid" redis-server "$IM_REDIS_PORT" "$d/redis.log"
}
redis_stop() { stop_proc redis "$IM_RUN_DIR/redis/redis.pid" redis-server TERM "$IM_REDIS_PORT"; }
redis_status() { status_of redis "$IM_RUN_DIR/redis/redis.pid" redis-server "$IM_REDIS_PORT"; }

# ------------------------------------------------------------------------------------------ mysql
mysql_root() { mariadb --no-defaults -uroot --socket="$MYSQL_SOCKET" "$@"; }
mysql_app() {
  MYSQL_PWD=$IM_MYSQL_PASSWORD mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P"$IM_MYSQL_PORT" \
    -u"$IM_MYSQL_USER" -NB -e 'SELECT 1' "$IM_MYSQL_DB"
}
mysql_ping() { mariadb-admin --no-defaults -uroot --socket="$MYSQL_SOCKET" --connect-timeout=2 ping; }
# Idempotent: run at every start, so changed IM_MYSQL_* settings take effect.
mysql_setup() {
  local u p db h; u=$(sql_str "$IM_MYSQL_USER"); p=$(sql_str "$IM_MYSQL_PASSWORD"); db="\`${IM_MYSQL_DB//\`/\`\`}\`"
  {
    # root: only over the unix socket (install-db also made passwordless TCP root accounts)
    echo "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', 'root'@$(sql_str "$(hostname)");"
    echo "CREATE DATABASE IF NOT EXISTS $db CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
    for h in "'127.0.0.1'" "'localhost'"; do
      echo "CREATE USER IF NOT EXISTS $u@$h IDENTIFIED BY $p; ALTER USER $u@$h IDENTIFIED BY $p;"
      echo "GRANT ALL ON $db.* TO $u@$h; GRANT ALL ON \`im\\_%\`.* TO $u@$h;"
    done
  } | mysql_root
}
mysql_start() {
  local d=$IM_RUN_DIR/mysql pid; mkdir -p "$d"; clock_start
  [ ${#MYSQL_SOCKET} -lt 100 ] || die "mysql: socket path too long for a unix socket: $MYSQL_SOCKET (use a shorter IM_RUN_DIR)"
  if pid=$(pid_from "$d/mysqld.pid" mariadbd); then
    mysql_setup 2>>"$d/setup.log" || fail_logs "mysql: running (pid $pid) but the user/db setup failed" "$d/setup.log" "$d/error.log"
    say "mysql: already running pid=$pid port=$IM_MYSQL_PORT"; return
  fi
  rm -f "$d/mysqld.pid"; require_free mysql "$IM_MYSQL_PORT"
  if [ ! -e "$d/installed" ]; then      # a new datadir (or one whose install was interrupted)
    rm -rf "$d/data"
    mariadb-install-db --no-defaults "${AS_ROOT[@]}" --datadir="$d/data" --skip-test-db \
      --auth-root-authentication-method=normal >"$d/install.log" 2>&1 9>&- ||
      fail_logs "mysql: mariadb-install-db failed" "$d/install.log"
    touch "$d/installed"
  fi
  # --no-defaults must be first: nothing from /etc/mysql may leak in. setsid: its own session, so a
  # Ctrl-C in the terminal that ran us does not reach it (and it does not fork: we lead no group).
  setsid mariadbd --no-defaults "${AS_ROOT[@]}" --datadir="$d/data" --bind-address=127.0.0.1 \
    --port="$IM_MYSQL_PORT" --socket="$MYSQL_SOCKET" --pid-file="$d/mysqld.pid" --skip-name-resolve \
    --log-error="$d/error.log" --innodb-flush-log-at-trx-commit=1 --max-connections=500 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
    </dev/null >>"$d/error.log" 2>&1 9>&- &
  echo $! >"$d/mysqld.pid"        # mariadbd rewrites it with the same pid; meanwhile we can see it die
  await mysql "$IM_MYSQL_PORT" "$d/mysqld.pid" "$d/error.log" mysql_ping
  mysql_setup 2>>"$d/setup.log" || fail_logs "mysql: creating the database/user failed" "$d/setup.log" "$d/error.log"
  mysql_app >/dev/null 2>>"$d/setup.log" ||
    fail_logs "mysql: user $IM_MYSQL_USER cannot connect over TCP 127.0.0.1:$IM_MYSQL_PORT" "$d/setup.log" "$d/error.log"
  started mysql "$d/mysqld.pid" mariadbd "$IM_MYSQL_PORT" "$d/error.log"
}
mysql_stop() { stop_proc mysql "$IM_RUN_DIR/mysql/mysqld.pid" mariadbd TERM "$IM_MYSQL_PORT"; }
mysql_status() { status_of mysql "$IM_RUN_DIR/mysql/mysqld.pid" mariadbd "$IM_MYSQL_PORT"; }

# --------------------------------------------------------------------------------------- rabbitmq
# Everything RabbitMQ and its CLI read, pointed into the run dir (never /etc/rabbitmq, /var/lib).
# Call in a subshell only. HOME holds the Erlang cookie. ERL_EPMD_PORT: our own epmd.
# -start_epmd false: no tool may spawn a stray system epmd. CLI dist port 0: the OS picks a free one
# (the default 35672-35682 range would be shared by parallel runs).
rabbit_env() {
  local d=$IM_RUN_DIR/rabbitmq dist="-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"
  export HOME=$d/home ERL_EPMD_PORT=$IM_EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$IM_RABBITMQ_PORT RABBITMQ_DIST_PORT=$IM_RABBITMQ_DIST_PORT \
    RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log RABBITMQ_PID_FILE=$d/rabbit.pid \
    RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config \
    RABBITMQ_CONFIG_FILES=$d/conf.d RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf \
    RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins ERL_CRASH_DUMP=$d/log/erl_crash.dump \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none $dist" \
    RABBITMQ_CTL_ERL_ARGS="$dist" RABBITMQ_CTL_DIST_PORT_MIN=0 RABBITMQ_CTL_DIST_PORT_MAX=0
}
rmqctl() { (rabbit_env; exec "$RABBIT_BIN/rabbitmqctl" -n "$RABBIT_NODE" "$@"); }

# The pid of this run's node found without its pid file (-detached writes it only after a while):
# beam.smp with our unique `-home <run dir>` that boots rabbit (rabbitmqctl runs share the -home).
rabbit_scan() {
  local f c
  for f in /proc/[0-9]*/cmdline; do
    { read -r c <"${f%cmdline}comm"; } 2>/dev/null || continue
    [ "$c" = beam.smp ] || continue
    c=$(tr '\0' '\n' <"$f" 2>/dev/null) || continue
    [[ $c == *$'\n-home\n'"$IM_RUN_DIR/rabbitmq/home"$'\n'* && $c == *$'\nrabbit\nboot\n'* ]] || continue
    f=${f#/proc/}; echo "${f%/cmdline}"; return 0
  done
  return 1
}
# 0 when the pid file appears; 1 when the node vanished first (then nothing of its output survived
# -detached, so it is booted once more in the foreground to capture why, e.g. a config error).
rabbit_wait_pidfile() {
  local d=$IM_RUN_DIR/rabbitmq misses=0 deadline=$((SECONDS + TIMEOUT))
  until [ -s "$d/rabbit.pid" ] || [ "$SECONDS" -ge "$deadline" ]; do
    if rabbit_scan >/dev/null; then misses=0; elif [ $((misses += 1)) -ge 20 ]; then break; fi
    sleep 0.1
  done
  [ -s "$d/rabbit.pid" ] || rabbit_scan >/dev/null && return 0
  (rabbit_env; exec timeout 30 "$RABBIT_BIN/rabbitmq-server") </dev/null >"$d/log/foreground.log" 2>&1 9>&- || true
  grep -a -m 25 -E '\[error\]|BOOT FAILED|Error' "$d/log/foreground.log" >"$d/log/boot-errors.log" || true
  return 1
}
epmd_start() {
  local d=$IM_RUN_DIR/rabbitmq
  pid_from "$d/epmd.pid" epmd >/dev/null && return 0
  require_free epmd "$IM_EPMD_PORT"
  # No -daemon, so $! is epmd's own pid (setsid does not fork: we are no process group leader).
  setsid epmd -address 127.0.0.1 -port "$IM_EPMD_PORT" </dev/null >>"$d/log/epmd.log" 2>&1 9>&- &
  echo $! >"$d/epmd.pid"
  await epmd "$IM_EPMD_PORT" "$d/epmd.pid" "$d/log/epmd.log" listening "$IM_EPMD_PORT"
}

# default_user in rabbitmq.conf creates the app user on a node's first boot (so no guest ever exists);
# this repairs a node created with other IM_RABBITMQ_* settings.
rabbit_ensure_user() {
  local u=$IM_RABBITMQ_USER p=$IM_RABBITMQ_PASSWORD
  rmqctl -q authenticate_user "$u" "$p" >/dev/null 2>&1 && return 0
  { rmqctl add_user "$u" "$p" || rmqctl change_password "$u" "$p"
    rmqctl set_user_tags "$u" administrator && rmqctl set_permissions -p / "$u" '.*' '.*' '.*'
    rmqctl delete_user guest || true
    rmqctl -q authenticate_user "$u" "$p"; } >>"$1" 2>&1
}
# Two halves: `start` launches the node first (it needs 5-10 s to boot here), starts the other
# servers meanwhile, then waits for it in rabbitmq_start.
RABBIT_LAUNCH=""      # "", "running" (was already) or "launched", with RABBIT_T0
rabbit_launch() {
  local d=$IM_RUN_DIR/rabbitmq; mkdir -p "$d/home" "$d/mnesia" "$d/log"; clock_start; RABBIT_T0=$T0
  if pid_from "$d/rabbit.pid" beam.smp >/dev/null; then epmd_start; RABBIT_LAUNCH=running; return; fi
  rm -f "$d/rabbit.pid"
  require_free rabbitmq "$IM_RABBITMQ_PORT"; require_free "rabbitmq (erlang distribution)" "$IM_RABBITMQ_DIST_PORT"
  epmd_start
  render "$TEMPLATES/rabbitmq.conf.in" "$d/rabbitmq.conf" PORT="$IM_RABBITMQ_PORT" \
    USER="$IM_RABBITMQ_USER" PASSWORD="$IM_RABBITMQ_PASSWORD" MEMORY="$IM_RABBITMQ_MEMORY"
  echo '[].' >"$d/enabled_plugins"                  # no plugins: no management listener
  # The real server script, not the /usr/sbin wrapper (that one switches user, uses /var/lib).
  (rabbit_env; exec setsid "$RABBIT_BIN/rabbitmq-server" -detached) </dev/null >"$d/log/startup.log" 2>&1 9>&- ||
    fail_logs "rabbitmq: rabbitmq-server -detached failed" "$d/log/startup.log"
  RABBIT_LAUNCH=launched
}
rabbitmq_start() {
  local d=$IM_RUN_DIR/rabbitmq pid log node_log
  [ -n "$RABBIT_LAUNCH" ] || rabbit_launch
  T0=$RABBIT_T0 log=$d/log/startup.log node_log=$d/log/$RABBIT_NODE.log
  if [ "$RABBIT_LAUNCH" = running ]; then
    pid=$(pid_from "$d/rabbit.pid" beam.smp) || fail_logs "rabbitmq: the node died" "$node_log"
    say "rabbitmq: already running pid=$pid port=$IM_RABBITMQ_PORT"; return
  fi
  rabbit_wait_pidfile || fail_logs "rabbitmq: the node exited during start-up" "$d/log/boot-errors.log" "$log"
  rmqctl wait --timeout "$TIMEOUT" "$d/rabbit.pid" >>"$log" 2>&1 ||
    fail_logs "rabbitmq: node $RABBIT_NODE did not come up within ${TIMEOUT}s" "$log" "$node_log"
  rabbit_ensure_user "$log" || fail_logs "rabbitmq: user $IM_RABBITMQ_USER does not work" "$log" "$node_log"
  listening "$IM_RABBITMQ_PORT" || fail_logs "rabbitmq: node is up but 127.0.0.1:$IM_RABBITMQ_PORT does not listen" "$node_log"
  started rabbitmq "$d/rabbit.pid" beam.smp "$IM_RABBITMQ_PORT" "$node_log"
}
rabbitmq_stop() {
  local d=$IM_RUN_DIR/rabbitmq pid
  [ -s "$d/rabbit.pid" ] || { pid=$(rabbit_scan) && echo "$pid" >"$d/rabbit.pid"; } || true  # failed start
  # SIGTERM makes the node shut down cleanly; the Erlang port programs go with it (and are checked).
  stop_proc rabbitmq "$d/rabbit.pid" beam.smp TERM "$IM_RABBITMQ_PORT" "$IM_RABBITMQ_DIST_PORT"
  stop_proc epmd "$d/epmd.pid" epmd TERM "$IM_EPMD_PORT" >/dev/null   # only ours: by its pid file
}
rabbitmq_status() {
  local pid epid d=$IM_RUN_DIR/rabbitmq
  pid=$(pid_from "$d/rabbit.pid" beam.smp) || pid=""
  epid=$(pid_from "$d/epmd.pid" epmd) || epid=""
  if [ -n "$pid" ] && [ -n "$epid" ]; then status_line rabbitmq running "$pid" "$IM_RABBITMQ_PORT epmd=$epid:$IM_EPMD_PORT"
  elif [ -n "$pid$epid" ]; then status_line rabbitmq stopped "${pid:--}" "$IM_RABBITMQ_PORT epmd=${epid:--}:$IM_EPMD_PORT (half up)"; return 1
  else status_line rabbitmq stopped - "$IM_RABBITMQ_PORT"; return 1; fi
}

# ------------------------------------------------------------------------------------------- ldap
ldap_ping() {
  ldapwhoami -x -o nettimeout=2 -H "ldap://127.0.0.1:$IM_LDAP_PORT" -D "uid=alice,ou=people,$IM_LDAP_BASE" -w alice_pass
}
ldap_start() {
  local d=$IM_RUN_DIR/ldap pid allow="" have="" dc; mkdir -p "$d"; clock_start
  [ "$IM_LDAP_ALLOW_ANON_DN" = 1 ] && allow="allow bind_anon_dn"
  if pid=$(pid_from "$d/slapd.pid" slapd); then
    have=$(grep -x 'allow bind_anon_dn' "$d/slapd.conf" 2>/dev/null) || true
    [ "$have" = "$allow" ] && { say "ldap: already running pid=$pid port=$IM_LDAP_PORT"; return; }
    ldap_stop >/dev/null               # IM_LDAP_ALLOW_ANON_DN changed: restart with the new config
  fi
  rm -f "$d/slapd.pid"; require_free ldap "$IM_LDAP_PORT"
  render "$TEMPLATES/slapd.conf.in" "$d/slapd.conf" RUN="$d" BASE="$IM_LDAP_BASE" ALLOW_ANON_DN="$allow" \
    ADMIN_DN="$IM_LDAP_ADMIN_DN" ADMIN_HASH="$(slappasswd -s "$IM_LDAP_ADMIN_PASSWORD")"
  if [ "$(cat "$d/seeded" 2>/dev/null)" != "$IM_LDAP_BASE" ]; then   # new, or another base
    [[ $IM_LDAP_BASE =~ ^dc=([^,]+) ]] || die "ldap: IM_LDAP_BASE must start with dc=... (got $IM_LDAP_BASE)"
    dc=${BASH_REMATCH[1]}
    rm -rf "$d/data"; mkdir -p "$d/data"
    render "$TEMPLATES/seed.ldif.in" "$d/seed.ldif" BASE="$IM_LDAP_BASE" DC="$dc" \
      READER_HASH="$(slappasswd -s reader_pass)" ALICE_HASH="$(slappasswd -s alice_pass)" \
      BOB_HASH="$(slappasswd -s bob_pass)" CAROL_HASH="$(slappasswd -s carol_pass)" DAVE_HASH="$(slappasswd -s dave_pass)"
    slapadd -q -f "$d/slapd.conf" -l "$d/seed.ldif" >"$d/slapadd.log" 2>&1 || fail_logs "ldap: slapadd of the seed failed" "$d/slapadd.log"
    echo "$IM_LDAP_BASE" >"$d/seeded"
  fi
  # Foreground (-d) under setsid: `-d stats` logs one line per operation to our log file (without -d
  # slapd logs only to syslog, which does not exist here). slapd writes its pid file itself.
  setsid slapd -d stats -h "ldap://127.0.0.1:$IM_LDAP_PORT/" -f "$d/slapd.conf" </dev/null >>"$d/slapd.log" 2>&1 9>&- &
  echo $! >"$d/slapd.pid"
  await ldap "$IM_LDAP_PORT" "$d/slapd.pid" "$d/slapd.log" ldap_ping
  started ldap "$d/slapd.pid" slapd "$IM_LDAP_PORT" "$d/slapd.log"
}
ldap_stop() { stop_proc ldap "$IM_RUN_DIR/ldap/slapd.pid" slapd INT "$IM_LDAP_PORT"; }   # SIGINT: clean shutdown
ldap_status() { status_of ldap "$IM_RUN_DIR/ldap/slapd.pid" slapd "$IM_LDAP_PORT"; }

# ------------------------------------------------------------------------------------------- main
# shellcheck disable=SC2034  # the locals are read through ${!v}
write_env() {
  local v IM_REDIS_HOST=127.0.0.1 IM_MYSQL_HOST=127.0.0.1 IM_RABBITMQ_HOST=127.0.0.1 IM_LDAP_HOST=127.0.0.1
  local IM_MYSQL_SOCKET=$MYSQL_SOCKET IM_RABBITMQ_VHOST=/ IM_RABBITMQ_NODENAME=$RABBIT_NODE
  local IM_REDIS_URL=redis://127.0.0.1:$IM_REDIS_PORT IM_LDAP_URL=ldap://127.0.0.1:$IM_LDAP_PORT
  local IM_RABBITMQ_URL="amqp://$IM_RABBITMQ_USER:$IM_RABBITMQ_PASSWORD@127.0.0.1:$IM_RABBITMQ_PORT/"
  local IM_LDAP_PEOPLE_BASE=ou=people,$IM_LDAP_BASE IM_LDAP_BIND_DN=cn=reader,ou=services,$IM_LDAP_BASE
  local IM_LDAP_BIND_PASSWORD=reader_pass
  # The secret every im-* process of this run shares (it authenticates the internal links):
  # generated once per run directory, kept mode 0600.
  if [ ! -s "$IM_RUN_DIR/cluster.secret" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$IM_RUN_DIR/cluster.secret")
  fi
  local IM_CLUSTER_SECRET
  IM_CLUSTER_SECRET=$(cat "$IM_RUN_DIR/cluster.secret")
  {
    echo "# Written by scripts/services.sh start. Source it: . $IM_RUN_DIR/env"
    for v in IM_RUN_DIR IM_REDIS_HOST IM_REDIS_PORT IM_REDIS_URL \
      IM_MYSQL_HOST IM_MYSQL_PORT IM_MYSQL_SOCKET IM_MYSQL_DB IM_MYSQL_USER IM_MYSQL_PASSWORD \
      IM_RABBITMQ_HOST IM_RABBITMQ_PORT IM_RABBITMQ_VHOST IM_RABBITMQ_USER IM_RABBITMQ_PASSWORD \
      IM_RABBITMQ_URL IM_RABBITMQ_NODENAME IM_RABBITMQ_DIST_PORT IM_EPMD_PORT \
      IM_LDAP_HOST IM_LDAP_PORT IM_LDAP_URL IM_LDAP_BASE IM_LDAP_PEOPLE_BASE IM_LDAP_BIND_DN \
      IM_LDAP_BIND_PASSWORD IM_LDAP_ADMIN_DN IM_LDAP_ADMIN_PASSWORD IM_LDAP_ALLOW_ANON_DN IM_CLUSTER_SECRET; do
      printf 'export %s=%s\n' "$v" "$(sh_quote "${!v}")"
    done
  } >"$IM_RUN_DIR/env.tmp"
  chmod 600 "$IM_RUN_DIR/env.tmp"  # passwords and the cluster secret
  mv "$IM_RUN_DIR/env.tmp" "$IM_RUN_DIR/env"
}

# One invocation at a time per run dir. Every server we spawn gets 9>&- so it cannot inherit the lock.
lock_run_dir() {
  exec 9>>"$IM_RUN_DIR/.lock"
  flock -w $((TIMEOUT * 3)) 9 || die "another scripts/services.sh is busy with $IM_RUN_DIR (lock $IM_RUN_DIR/.lock)"
}

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

cmd=${1:-}; [ $# -gt 0 ] && shift
case $cmd in
  rabbitmqctl) rmqctl "$@"; exit ;;
  mysql) mysql_root "$@"; exit ;;
  start | stop | status | clean) ;;
  *) usage ;;
esac
for p in IM_REDIS_PORT IM_MYSQL_PORT IM_RABBITMQ_PORT IM_RABBITMQ_DIST_PORT IM_EPMD_PORT IM_LDAP_PORT; do
  if ! [[ ${!p} =~ ^[0-9]+$ ]] || [ "${!p}" -lt 1 ] || [ "${!p}" -gt 65535 ]; then
    die "$p=${!p} is not a port (1-65535)$([ $p = IM_RABBITMQ_DIST_PORT ] && echo '; set it explicitly')"
  fi
done
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "IM_SERVICES_TIMEOUT=$TIMEOUT is not a number of seconds"
names=("$@"); [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
for n in "${names[@]}"; do
  case $n in redis | mysql | rabbitmq | ldap) ;; *) die "unknown server '$n' (expected: ${ALL[*]})" ;; esac
done

case $cmd in
  start)
    mkdir -p "$IM_RUN_DIR"; touch "$IM_RUN_DIR/.im-services"; lock_run_dir
    for n in "${names[@]}"; do if [ "$n" = rabbitmq ]; then rabbit_launch; fi; done
    for n in "${names[@]}"; do "${n}_start"; done
    write_env ;;
  stop)
    [ -d "$IM_RUN_DIR" ] || { for n in "${names[@]}"; do say "$n: not running"; done; exit 0; }
    lock_run_dir
    for n in "${names[@]}"; do "${n}_stop"; done ;;
  status)
    rc=0; for n in "${names[@]}"; do "${n}_status" || rc=3; done; exit $rc ;;
  clean)
    [ -d "$IM_RUN_DIR" ] || exit 0
    [ -e "$IM_RUN_DIR/.im-services" ] || die "$IM_RUN_DIR was not made by scripts/services.sh; not removing it"
    lock_run_dir
    for n in "${ALL[@]}"; do "${n}_stop"; done
    rm -rf "$IM_RUN_DIR"; say "removed $IM_RUN_DIR" ;;
esac
