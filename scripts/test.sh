#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, member
# cluster binaries, then every test. Ends with cargo test's own summary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - start ))s)" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo doc --no-deps (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

if [ -x scripts/testenv.sh ]; then
  step "member-cluster binaries (scripts/testenv.sh build)"
  scripts/testenv.sh build
fi

step "helm for tests/helm.rs (scripts/helm.sh)"
bash scripts/helm.sh >/dev/null

step "cargo test"
cargo test --all-targets --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/tmc-test-output.log"
status=${PIPESTATUS[0]}
step "done"
# One closing line over all test binaries, from cargo's own per-binary lines.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "${TMPDIR:-/tmp}/tmc-test-output.log"
exit "$status"
