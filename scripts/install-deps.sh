#!/usr/bin/env bash
# Installs every Debian package the project needs to build, test and run locally.
# Fast and silent when everything is present; usable by CI, ./scripts/up and the Dockerfile.
#
#   scripts/install-deps.sh            build + server packages (default)
#   scripts/install-deps.sh --build    build packages only (the Docker build stage)
#   scripts/install-deps.sh --runtime  runtime libraries only (the Docker runtime stage)
#   scripts/install-deps.sh --bench    load tools for scripts/bench* (wrk, python3 for the report)
#   scripts/install-deps.sh --compose  checkers of docker/ (Debian's docker-compose v1, PyYAML, haproxy;
#                                      no Docker engine needed), used by scripts/test
#   scripts/install-deps.sh --fuzz     clang 14 and its runtime libraries (libFuzzer, ASan, UBSan) for
#                                      scripts/fuzz (with --build's packages)
set -euo pipefail

BUILD_PKGS=(
  g++ cmake ninja-build pkg-config ccache make
  libboost-dev libboost-system-dev libboost-program-options-dev
  protobuf-compiler libprotobuf-dev
  libhiredis-dev libmysqlcppconn-dev librabbitmq-dev libldap-dev
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libsodium-dev libssl-dev prometheus-cpp-dev
)
SERVER_PKGS=(
  redis-server redis-tools mariadb-server mariadb-client
  rabbitmq-server slapd ldap-utils
  curl openssl iproute2 procps psmisc
)
BENCH_PKGS=(wrk python3)
COMPOSE_PKGS=(docker-compose python3-yaml haproxy)
FUZZ_PKGS=(clang-14 libclang-rt-14-dev)
RUNTIME_PKGS=(
  libprotobuf32 libhiredis0.14 libmysqlcppconn7v5 librabbitmq4 libldap-2.5-0
  libspdlog1.10 libfmt9 libyaml-cpp0.7 libsodium23 libssl3 libprometheus-cpp-core1.0
  libprometheus-cpp-pull1.0 ca-certificates curl openssl
)

case "${1:-}" in
  --build) want=("${BUILD_PKGS[@]}") ;;
  --runtime) want=("${RUNTIME_PKGS[@]}") ;;
  --bench) want=("${BENCH_PKGS[@]}") ;;
  --compose) want=("${COMPOSE_PKGS[@]}") ;;
  --fuzz) want=("${BUILD_PKGS[@]}" "${FUZZ_PKGS[@]}") ;;
  ""|--all) want=("${BUILD_PKGS[@]}" "${SERVER_PKGS[@]}") ;;
  *) echo "usage: $0 [--all|--build|--runtime|--bench|--compose|--fuzz]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# slapd: skip the Debian default database; our scripts write their own config.
echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
# Never let a package start a service (there is no systemd here, and we run servers ourselves).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt_opts=(-y -q -o Dpkg::Use-Pty=0 --no-install-recommends)
if ! $SUDO apt-get install "${apt_opts[@]}" "${missing[@]}" >/tmp/install-deps.log 2>&1; then
  $SUDO apt-get update -q >>/tmp/install-deps.log 2>&1 || true
  $SUDO apt-get install "${apt_opts[@]}" "${missing[@]}" >>/tmp/install-deps.log 2>&1 || {
    tail -n 40 /tmp/install-deps.log >&2; echo "install-deps: apt-get failed (log: /tmp/install-deps.log)" >&2; exit 1; }
fi
echo "install-deps: done" >&2
