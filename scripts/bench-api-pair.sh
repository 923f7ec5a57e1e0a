#!/usr/bin/env bash
# `tmc bench api` for several tmc binaries, each beside its anchor.
#
# Usage: scripts/bench-api-pair.sh OUTDIR BIN... [-- BENCH_API_ARGS]
#
# For each binary in turn: a fresh three-replica shard of it on loopback
# (tmc certs, peer mutual TLS, fsync on), `BIN bench api` against the
# leader's API, then the same command against one kube-apiserver of the
# member-cluster test environment, back to back. Reports go to
# OUTDIR/<binary name>.tmc.json and .kas.json; scripts/bench-api-table.py
# OUTDIR prints the ratios. Give the same binary twice under two names
# (hard links) to run it twice, e.g. before, after, after, before.
# Ports 27101-27303 on 127.0.0.1 must be free.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$1; shift
BINS=(); while [[ $# -gt 0 && $1 != -- ]]; do BINS+=("$1"); shift; done; shift || true
ARGS=("$@")
mkdir -p "$OUT"
ENV_DIR=${TMPDIR:-/tmp}/tmc-bench-api-pair-env
TESTENV_DIR=$ENV_DIR bash "$HERE/testenv.sh" start 1 >/dev/null
trap 'TESTENV_DIR=$ENV_DIR bash "$HERE/testenv.sh" stop >/dev/null 2>&1 || true; pkill -f "tmc-bench-api-pair\." || true' EXIT
for bin in "${BINS[@]}"; do
  tag=$(basename "$bin")
  D=$(mktemp -d "${TMPDIR:-/tmp}/tmc-bench-api-pair.XXXX")
  "$bin" certs --dir "$D/tls" >/dev/null
  for i in 1 2 3; do
    "$bin" serve --node-id $i --peers 1=127.0.0.1:27101,2=127.0.0.1:27102,3=127.0.0.1:27103 \
      --kv-peers 1=127.0.0.1:27201,2=127.0.0.1:27202,3=127.0.0.1:27203 --data-dir "$D/n$i" \
      --listen 127.0.0.1:2720$i --api-listen 127.0.0.1:2730$i --tls-dir "$D/tls/nodes/$i" \
      --peer-tls-dir "$D/tls/nodes/$i" >"$D/n$i.log" 2>&1 &
  done
  LEADER=""
  for _ in $(seq 1 100); do
    for i in 1 2 3; do
      s=$(curl -sk --cert "$D/tls/peer.crt" --key "$D/tls/peer.key" https://127.0.0.1:2720$i/status 2>/dev/null || true)
      if echo "$s" | grep -q "\"role\":\"leader\""; then LEADER=$i; fi
    done
    [[ -n $LEADER ]] && break; sleep 0.2
  done
  [[ -n $LEADER ]] || { echo "no leader; status: $s" >&2; ls "$D/tls"; exit 1; }
  "$bin" kubeconfig --dir "$D/tls" --server https://127.0.0.1:2730$LEADER --workspace root > "$D/tmc.kubeconfig"
  for _ in $(seq 1 100); do kubectl --kubeconfig "$D/tmc.kubeconfig" get ns >/dev/null 2>&1 && break; sleep 0.2; done
  echo "== $tag tmc (leader $LEADER) load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$bin" bench api --kubeconfig "$D/tmc.kubeconfig" --json "${ARGS[@]}" > "$OUT/$tag.tmc.json"
  echo "== $tag kube-apiserver load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$bin" bench api --kubeconfig "$ENV_DIR/member-1/kubeconfig" --json "${ARGS[@]}" > "$OUT/$tag.kas.json"
  pkill -f "$D" || true; sleep 1; rm -rf "$D"
done
