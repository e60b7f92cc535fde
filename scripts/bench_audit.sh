#!/usr/bin/env bash
# Audit ingest benchmark: builds the release binaries, then measures
# messages/s with 1, 8 and 64 writers against the floor (health Check), on
# SQLite (synchronous full and normal); `--store postgres` adds a private
# PostgreSQL (every commit flushed) with one Audit replica, then two.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p heist-audit -p heist-oauth
cargo bench -p heist-e2e --bench audit_ingest -- "$@"
