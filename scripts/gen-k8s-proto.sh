#!/usr/bin/env bash
# Regenerates src/api/proto/k8s-v1.34.desc: the protobuf descriptors of the
# Kubernetes kinds tmc serves, from the .proto files of k8s.io/api and
# k8s.io/apimachinery v0.34.4 (fetched through the Go module proxy; the
# test environment's build already has them in ~/.cache/tmc/go).
set -euo pipefail
V=v0.34.4
GOMODCACHE=${GOMODCACHE:-$HOME/.cache/tmc/go/mod}
if [ ! -d "$GOMODCACHE/k8s.io/api@$V" ] || [ ! -d "$GOMODCACHE/k8s.io/apimachinery@$V" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && go mod init x >/dev/null 2>&1 && GOMODCACHE=$GOMODCACHE go mod download "k8s.io/api@$V" "k8s.io/apimachinery@$V")
  rm -rf "$tmp"
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/k8s.io"
ln -s "$GOMODCACHE/k8s.io/api@$V" "$root/k8s.io/api"
ln -s "$GOMODCACHE/k8s.io/apimachinery@$V" "$root/k8s.io/apimachinery"
out=$(cd "$(dirname "$0")/.." && pwd)/src/api/proto/k8s-v1.34.desc
(cd "$root" && protoc -I. --include_imports --descriptor_set_out="$out" \
  k8s.io/api/core/v1/generated.proto \
  k8s.io/api/apps/v1/generated.proto \
  k8s.io/api/batch/v1/generated.proto \
  k8s.io/api/rbac/v1/generated.proto \
  k8s.io/api/authorization/v1/generated.proto \
  k8s.io/api/autoscaling/v1/generated.proto \
  k8s.io/api/autoscaling/v2/generated.proto \
  k8s.io/api/networking/v1/generated.proto \
  k8s.io/api/policy/v1/generated.proto \
  k8s.io/api/coordination/v1/generated.proto \
  k8s.io/api/discovery/v1/generated.proto 2>/dev/null)
echo "wrote $out"
