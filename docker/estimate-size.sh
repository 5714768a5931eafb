#!/usr/bin/env bash
# Estimates the size of the im runtime image without a Docker engine:
#   debian:bookworm-slim (given, see below) + the packages scripts/install-deps.sh --runtime adds to
#   it (Installed-Size from apt's metadata, dependencies included, minus what the slim base already
#   has: the Essential/Required packages and apt) + the im-* binaries stripped like the Dockerfile.
# An estimate: apt-get also leaves a few MB of docs/caches, and layer metadata is not counted.
#   docker/estimate-size.sh [BIN_DIR]      (default build/bin)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/build/bin}
BASE_MB=${IM_SLIM_BASE_MB:-75}   # debian:bookworm-slim, uncompressed (docker images shows ~74-75 MB)

# The RUNTIME_PKGS array of scripts/install-deps.sh, read from the script itself.
eval "$(sed -n '/^RUNTIME_PKGS=(/,/)/p' "$ROOT/scripts/install-deps.sh")"
runtime="${RUNTIME_PKGS[*]}"
closure() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances "$@" 2>/dev/null | sed -n 's/^[ |]*\(Pre\)\{0,1\}Depends: <\{0,1\}\([^> :]*\).*/\2/p;/^[^ ]/p' |
    sed 's/:.*//' | grep -v '^<' | sort -u
}
base_pkgs=$(dpkg-query -W -f='${Package} ${Priority} ${Essential}\n' | awk '$2=="required" || $3=="yes" {print $1}')
# shellcheck disable=SC2086
closure $base_pkgs apt >/tmp/im-size-base.$$
# shellcheck disable=SC2086
closure $runtime >/tmp/im-size-rt.$$
added=$(comm -23 /tmp/im-size-rt.$$ /tmp/im-size-base.$$)
rm -f /tmp/im-size-base.$$ /tmp/im-size-rt.$$
kib=0 n=0
for p in $added; do
  s=$(apt-cache show --no-all-versions "$p" 2>/dev/null | sed -n 's/^Installed-Size: //p' | head -1) || true
  [ -n "$s" ] || continue              # virtual package
  kib=$((kib + s)); n=$((n + 1))
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bin_bytes=0
for b in im-rest im-transfer im-connector; do
  cp "$BIN/$b" "$tmp/" && strip --strip-unneeded "$tmp/$b"
  bin_bytes=$((bin_bytes + $(stat -c %s "$tmp/$b")))
  awk -v b="$b" -v s="$(stat -c %s "$tmp/$b")" 'BEGIN { printf "  %-13s %5.1f MB stripped\n", b, s / 1e6 }'
done
pk_mb=$((kib * 1024 / 1000000)) bin_mb=$((bin_bytes / 1000000))
echo "  runtime packages added to the slim base: $n packages, ${pk_mb} MB installed"
echo "  debian:bookworm-slim base: ~${BASE_MB} MB"
echo "estimated image size: ~$((BASE_MB + pk_mb + bin_mb)) MB (base ${BASE_MB} + packages ${pk_mb} + binaries ${bin_mb})"
