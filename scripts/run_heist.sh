#!/usr/bin/env bash
# One command for the whole demo: starts the mesh, runs a heist session
# (arguments go to `orchestrator run`, e.g. --turns 8 --seed 42), and stops
# the mesh again, whatever happens.
#
#   scripts/run_heist.sh
#   scripts/run_heist.sh --turns 10 --seed 7 --transcript run/heist
#   scripts/run_heist.sh --llm-url http://localhost:1234/v1 --model google/gemma-3n-e4b
#   scripts/run_heist.sh --tls --turns 8   # mutual TLS on every hop (run/certs, made if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
profile=${HEIST_PROFILE:-release}
run_dir=${HEIST_RUN_DIR:-$root/run}

start=()
tls=()
if [ "${1:-}" = --tls ]; then
  shift
  start=(--tls)
  certs=$run_dir/certs
  tls=(--tls-ca "$certs/ca.pem" --tls-cert "$certs/orchestrator.pem" --tls-key "$certs/orchestrator-key.pem")
fi

"$root/scripts/start_services.sh" "${start[@]}"
trap '"$root/scripts/stop_services.sh"' EXIT
"$root/target/$profile/orchestrator" --config "${HEIST_CONFIG:-$root/orchestrator/heist.yaml}" \
  "${tls[@]}" --spool "$run_dir/audit.spool" run "$@"
