#!/usr/bin/env bash
# promtool, built from the Go module proxy (no prebuilt binary can be
# downloaded here), cached per version, then the checks of deploy/monitoring.
#
#   scripts/promtool.sh build        build (or reuse) promtool; prints its path
#   scripts/promtool.sh check        build, then on deploy/monitoring: `promtool
#                                    check rules`, `promtool test rules`, `check
#                                    config` of the scrape job, and every query of
#                                    the dashboard parsed
#   scripts/promtool.sh run ARGS...  build, then run promtool ARGS
#
# Environment: PROMTOOL_VERSION (the Go module version of
# github.com/prometheus/prometheus; Prometheus 3.x tags its Go module v0.3XX.Y),
# TMC_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/tmc), GO (go command).
# The binary lands in $TMC_CACHE_DIR/tools/promtool-<version>; Go caches in
# $TMC_CACHE_DIR/go/{mod,build}, shared with scripts/testenv.sh.
# TMC_MONITORING_DIR checks another copy of deploy/monitoring (tests/deploy.rs
# checks that a broken copy fails).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${TMC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tmc}"
VERSION="${PROMTOOL_VERSION:-v0.316.0}"
TOOLS="$CACHE_ROOT/tools"
# Service discovery plugins other than file, http and kubernetes (the one
# prometheus-scrape.yaml uses) left out: they are most of the build (the
# cloud SDKs) and none of them is needed to check these files.
TAGS="remove_all_sd,enable_kubernetes_sd"
BIN="$TOOLS/promtool-$VERSION-k8s-sd"
MON="${TMC_MONITORING_DIR:-$ROOT/deploy/monitoring}"

die() { echo "promtool.sh: error: $*" >&2; exit 1; }
log() { echo "promtool.sh: $*" >&2; }

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
  die "no Go toolchain: install Go >= 1.24 or set GO=/path/to/go"
}

cmd_build() {
  if [[ -x "$BIN" ]]; then echo "$BIN"; return 0; fi
  local go t0 tmp
  go="$(find_go)"
  t0=$(date +%s)
  mkdir -p "$TOOLS"
  tmp="$(mktemp -d "$TOOLS/.build-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  log "building promtool $VERSION with $("$go" version) (a few minutes the first time)"
  # GOBIN + `go install pkg@version`: the module's own go.mod and go.sum
  # pin every dependency; nothing of this repository is involved.
  GOMODCACHE="$CACHE_ROOT/go/mod" GOCACHE="$CACHE_ROOT/go/build" GOBIN="$tmp" \
    GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" CGO_ENABLED=0 \
    nice -n "${PROMTOOL_NICE:-10}" "$go" install -trimpath -tags "$TAGS" -ldflags "-s -w" \
      "github.com/prometheus/prometheus/cmd/promtool@$VERSION" \
    || die "go install github.com/prometheus/prometheus/cmd/promtool@$VERSION failed (see above)"
  [[ -x "$tmp/promtool" ]] || die "go install did not produce promtool"
  mv "$tmp/promtool" "$BIN"
  rm -rf "$tmp"; trap - EXIT
  log "built $BIN in $(( $(date +%s) - t0 )) s"
  echo "$BIN"
}

# Every query of the Grafana dashboard, its variables given a value, must
# parse as PromQL.
check_dashboard() {
  local bin="$1" n=0 expr
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to read the dashboard"
  while IFS= read -r expr; do
    n=$((n + 1))
    "$bin" --experimental promql format "$expr" >/dev/null \
      || die "query $n of tmc-dashboard.json does not parse: $expr"
  done < <(python3 - "$MON/tmc-dashboard.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(d["panels"]):
    for t in p.get("targets", []):
        e = t["expr"].replace("$namespace", "tmc-system").replace("$shard", ".*")
        print(e.replace("\n", " "))
PY
)
  [[ $n -gt 0 ]] || die "no query found in tmc-dashboard.json"
  log "the dashboard's $n queries parse"
}

cmd_check() {
  local bin
  bin="$(cmd_build)"
  log "promtool check rules $MON/tmc-alerts.yaml"
  "$bin" check rules "$MON/tmc-alerts.yaml"
  log "promtool test rules $MON/tmc-alerts.test.yaml"
  (cd "$MON" && "$bin" test rules tmc-alerts.test.yaml)
  log "promtool check config $MON/prometheus-scrape.yaml"
  "$bin" check config "$MON/prometheus-scrape.yaml"
  check_dashboard "$bin"
}

case "${1:-}" in
  build) cmd_build ;;
  check) cmd_check ;;
  run) shift; bin="$(cmd_build)"; exec "$bin" "$@" ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
