# Shared helpers for the project's scripts (sourced, not executed).

IM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export IM_ROOT

im_log() { printf '%s\n' "$*" >&2; }
im_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# True when something listens on 127.0.0.1:$1 (or on any address).
im_port_in_use() {
  ss -Hltn "sport = :$1" 2>/dev/null | grep . >/dev/null
}

# Prints a free TCP port from a range that avoids the defaults and the kernel's ephemeral range
# (32768-60999), skipping ports in $IM_TAKEN_PORTS (ports chosen earlier in this run).
im_free_port() {
  local p tries=0
  while [ $tries -lt 200 ]; do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    tries=$((tries + 1))
    case " ${IM_TAKEN_PORTS:-} " in *" $p "*) continue ;; esac
    if ! im_port_in_use "$p"; then
      IM_TAKEN_PORTS="${IM_TAKEN_PORTS:-} $p"
      echo "$p"
      return 0
    fi
  done
  im_die "no free port found"
}

# im_pick_port VAR: sets and exports VAR to a free port and remembers it in this shell, so the
# next pick cannot return it again (a plain "$(im_free_port)" runs in a subshell and forgets).
im_pick_port() {
  local __v
  __v=$(im_free_port) || return 1
  IM_TAKEN_PORTS="${IM_TAKEN_PORTS:-} $__v"
  printf -v "$1" %s "$__v"
  export "${1?}"
}

# The build directory and type used by up/test (overridable).
IM_BUILD_DIR="${IM_BUILD_DIR:-$IM_ROOT/build}"
IM_BUILD_TYPE="${IM_BUILD_TYPE:-Release}"
export IM_BUILD_DIR IM_BUILD_TYPE
# ThreadSanitizer's options for scripts/tsan-unit and IM_BUILD_TYPE=Tsan scripts/test (each adds
# its log_path): every report, not only the first; tests/sanitizers/tsan.supp says what is suppressed.
IM_TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$IM_ROOT/tests/sanitizers/tsan.supp"

# ccache keys on paths relative to the checkout, so another clone or worktree of the project (a
# fresh CI clone, a second work tree) reuses the cache instead of compiling everything again.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$IM_ROOT}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
