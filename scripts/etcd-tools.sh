#!/usr/bin/env bash
# Builds etcdctl and etcdutl (the version pinned in testenv/etcdtools/go.mod,
# the same as the etcd server of testenv/go.mod) for `tmc bench backup`, and
# prints the directory that holds them. Reuses an earlier build.
#
#   bash scripts/etcd-tools.sh        # -> ~/.cache/tmc/etcdtools/<key>/bin
#
# Not part of the test command: only the backup benchmark needs them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODDIR="$ROOT/testenv/etcdtools"
CACHE_ROOT="${TMC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tmc}"
KEY="$(cat "$MODDIR/go.mod" "$MODDIR/go.sum" | sha256sum | cut -c1-12)"
BIN="$CACHE_ROOT/etcdtools/$KEY/bin"
if [[ -x "$BIN/etcdctl" && -x "$BIN/etcdutl" ]]; then
  echo "$BIN"
  exit 0
fi
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || { echo "etcd-tools: no Go toolchain (set GO=)" >&2; exit 1; }
export GOMODCACHE="$CACHE_ROOT/go/mod" GOCACHE="$CACHE_ROOT/go/build"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
tmp="$CACHE_ROOT/etcdtools/.build-$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "etcd-tools: building etcdctl and etcdutl into $BIN" >&2
(cd "$MODDIR" && nice -n 19 "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/" \
  go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3)
rm -rf "$BIN"; mkdir -p "$(dirname "$BIN")"
mv "$tmp" "$BIN"
trap - EXIT
echo "$BIN"
