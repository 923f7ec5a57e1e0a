#!/usr/bin/env bash
# Installs what a fresh machine of this kind lacks to build and test tmc.
# Idempotent: a second run installs nothing and takes well under a second.
# Sourced by scripts/dev.sh and scripts/test.sh.
set -euo pipefail

# System packages: libclang for RocksDB's bindgen, protoc for raft-rs, a C++
# toolchain for RocksDB itself, openssl for test certificates, Python with
# venv for the Kubernetes Python client test (scripts/pyenv.sh).
TMC_APT_PACKAGES=(libclang-dev protobuf-compiler clang g++ make openssl curl python3 python3-venv)

missing=()
for p in "${TMC_APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust with rustup" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true

# Build outputs live outside the clone so that every CI run reuses them:
# RocksDB's C++ alone takes about half an hour on two cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tmc/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
mkdir -p "$CARGO_TARGET_DIR"

# The Kubernetes Python client for tests/api_python.rs, in a venv.
. "$(dirname "${BASH_SOURCE[0]}")/pyenv.sh"
