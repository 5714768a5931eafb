#!/usr/bin/env bash
# Configures and builds the project: scripts/build.sh [extra cmake --build args]
#   IM_BUILD_DIR  (default build/)     IM_BUILD_TYPE  Release | Debug | RelWithDebInfo | Asan
#   IM_CMAKE_ARGS extra cmake options at configure time (e.g. -DIM_BUILD_TESTS=OFF, the Docker build)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ ! -f "$IM_BUILD_DIR/build.ninja" ] || \
   ! grep -q "^CMAKE_BUILD_TYPE:STRING=$IM_BUILD_TYPE\$" "$IM_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
  # shellcheck disable=SC2086
  cmake -S "$IM_ROOT" -B "$IM_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$IM_BUILD_TYPE" ${IM_CMAKE_ARGS:-} >/dev/null
fi
# Two jobs per core would swap on small machines with heavy C++ (Beast, protobuf).
jobs="${IM_BUILD_JOBS:-$(nproc)}"
cmake --build "$IM_BUILD_DIR" -j "$jobs" "$@"
