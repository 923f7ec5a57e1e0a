#!/usr/bin/env bash
# Builds tmc (installing what a fresh machine lacks) and runs `tmc dev`:
# an embedded single-node tmc with its data under ./.tmc.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo build --bin tmc
exec "$CARGO_TARGET_DIR/debug/tmc" dev "$@"
