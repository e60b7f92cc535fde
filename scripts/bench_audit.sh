#!/usr/bin/env bash
# Audit ingest benchmark: builds the release binaries, then measures
# messages/s with 1 and 64 writers against the floor (health Check).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p heist-audit -p heist-oauth
cargo bench -p heist-e2e --bench audit_ingest
