#!/usr/bin/env bash
# Checks deploy/: renders every overlay with kustomize; with a kubeconfig,
# has that cluster's kube-apiserver validate, default and admit every object
# (`kubectl apply --dry-run=server -k`, strict field validation, nothing
# stored); then the monitoring checks (scripts/promtool.sh check).
#
#   scripts/deploy-check.sh [--kubeconfig FILE] [--no-promtool] [--keep-namespace]
#                           [--out DIR] [OVERLAY_DIR...]
#
# OVERLAY_DIR defaults to every deploy/overlays/*/. --out keeps the rendered
# manifests as DIR/<overlay>.yaml. kubectl: $KUBECTL, else the one
# scripts/testenv.sh built, else kubectl on PATH.
#
# A dry run does not create the overlay's Namespace, and the apiserver's
# NamespaceLifecycle admission refuses objects in a namespace that does not
# exist, dry run or not. So when the namespace is missing, this creates it
# for real from the overlay's own Namespace object (its Pod Security labels
# then apply to the dry run) and deletes it afterwards (--keep-namespace
# keeps it). Nothing else is written to the cluster. A Pod Security
# warning about a pod template fails the check too (the namespace enforces
# "restricted", and the pods would be refused).
# Used by tests/deploy.rs against a member kube-apiserver of the test
# environment; see docs/deploy.md, "Checking the manifests".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "deploy-check: error: $*" >&2; exit 1; }
log() { echo "deploy-check: $*" >&2; }

KUBECONFIG_FILE="" PROMTOOL=1 KEEP_NS=0 OUT="" OVERLAYS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kubeconfig) [[ $# -ge 2 ]] || die "--kubeconfig needs a file"; KUBECONFIG_FILE="$2"; shift 2 ;;
    --no-promtool) PROMTOOL=0; shift ;;
    --keep-namespace) KEEP_NS=1; shift ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) OVERLAYS+=("$1"); shift ;;
  esac
done
if [[ ${#OVERLAYS[@]} -eq 0 ]]; then
  for d in "$ROOT"/deploy/overlays/*/; do OVERLAYS+=("${d%/}"); done
fi
[[ ${#OVERLAYS[@]} -gt 0 ]] || die "no overlay to check"

if [[ -n "${KUBECTL:-}" ]]; then
  K="$KUBECTL"
elif bin="$("$ROOT/scripts/testenv.sh" check 2>/dev/null)" && [[ -x "$bin/kubectl" ]]; then
  K="$bin/kubectl"
else
  K="$(command -v kubectl)" || die "no kubectl (set KUBECTL, or run scripts/testenv.sh build)"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tmc-deploy-check-XXXXXX")"
created_ns=()
cleanup() {
  local ns
  for ns in "${created_ns[@]}"; do
    if [[ $KEEP_NS -eq 0 ]]; then
      log "deleting namespace $ns (created for the dry run)"
      "$K" --kubeconfig "$KUBECONFIG_FILE" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

# namespace_docs FILE: the Namespace objects of a rendered overlay, as YAML
# (kustomize writes top-level keys at column 0 and "---" between objects).
namespace_docs() {
  awk 'BEGIN { RS = "\n---\n" } /(^|\n)kind: Namespace(\n|$)/ { printf "---\n%s\n", $0 }' "$1"
}

failed=0
for overlay in "${OVERLAYS[@]}"; do
  name="$(basename "$overlay")"
  rendered="$work/$name.yaml"
  if ! "$K" kustomize "$overlay" > "$rendered" 2> "$work/$name.err"; then
    cat "$work/$name.err" >&2
    log "FAIL $name: kustomize could not render $overlay"
    failed=1; continue
  fi
  kinds="$(grep -E '^kind: ' "$rendered" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $1, $3; sep = ", " }')"
  [[ -n "$kinds" ]] || { log "FAIL $name: rendered nothing"; failed=1; continue; }
  log "rendered $name: $kinds"
  if [[ -n "$OUT" ]]; then mkdir -p "$OUT"; cp "$rendered" "$OUT/$name.yaml"; fi
  [[ -n "$KUBECONFIG_FILE" ]] || continue

  namespace_docs "$rendered" > "$work/$name.ns.yaml"
  for ns in $(awk '/^kind: Namespace$/ { ns = 1 } ns && /^  name: / { print $2; ns = 0 }' "$work/$name.ns.yaml"); do
    # A namespace being deleted (a previous check's) admits nothing: wait.
    for _ in $(seq 120); do
      phase="$("$K" --kubeconfig "$KUBECONFIG_FILE" get namespace "$ns" -o 'jsonpath={.status.phase}' 2>/dev/null || true)"
      [[ "$phase" == Terminating ]] || break
      sleep 0.5
    done
    [[ "$phase" != Terminating ]] || die "namespace $ns is still terminating after 60 s"
    if [[ -z "$phase" ]]; then
      log "creating namespace $ns from $name's Namespace object (a dry run cannot; deleted afterwards)"
      "$K" --kubeconfig "$KUBECONFIG_FILE" create --save-config -f "$work/$name.ns.yaml" >/dev/null \
        || die "cannot create namespace $ns"
      created_ns+=("$ns")
    fi
  done
  if "$K" --kubeconfig "$KUBECONFIG_FILE" apply --dry-run=server --validate=strict -f "$rendered" \
       > "$work/$name.out" 2>&1; then
    sed 's/^/  /' "$work/$name.out" >&2
    # Pod Security admission only warns about a workload's pod template;
    # the pods themselves would be refused, so a warning is a failure.
    if grep -q "would violate PodSecurity" "$work/$name.out"; then
      log "FAIL $name: pods would violate the namespace's Pod Security level (above)"
      failed=1
    else
      log "ok $name: every object accepted by the apiserver (server dry run)"
    fi
  else
    sed 's/^/  /' "$work/$name.out" >&2
    log "FAIL $name: the apiserver refused some objects (above)"
    failed=1
  fi
done

if [[ $PROMTOOL -eq 1 ]]; then
  if "$ROOT/scripts/promtool.sh" check; then
    log "ok monitoring: promtool checks pass"
  else
    log "FAIL monitoring: promtool checks"
    failed=1
  fi
fi

if [[ $failed -ne 0 ]]; then log "FAILED"; exit 1; fi
log "all checks passed"
