#!/usr/bin/env bash
# Mesh cost per turn: builds the release binaries, then runs S sessions x T
# turns against them (offline LLM, no delay) and prints turns/s, per-turn
# overhead, per-RPC latency, the gRPC floor and peak RSS (table and JSON).
# Arguments go to the bench, e.g.:
#   scripts/bench.sh                                # 1, 16, 64 sessions x 50 turns
#   scripts/bench.sh --runs 3 --json run/bench.json # medians of 3 runs
#   scripts/bench.sh --sessions 64 --turns 1563     # 100k turns (RSS after a long run)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins -p heist-oauth -p heist-audit -p heist-memory -p heist-tools
cargo bench -p heist-e2e --bench mesh -- "$@"
