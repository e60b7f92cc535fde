#!/usr/bin/env bash
# One command for the whole demo: starts the mesh, runs a heist session
# (arguments go to `orchestrator run`, e.g. --turns 8 --seed 42), and stops
# the mesh again, whatever happens.
#
#   scripts/run_heist.sh
#   scripts/run_heist.sh --turns 10 --seed 7 --transcript run/heist
#   scripts/run_heist.sh --llm-url http://localhost:1234/v1 --model google/gemma-3n-e4b
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
profile=${HEIST_PROFILE:-release}

"$root/scripts/start_services.sh"
trap '"$root/scripts/stop_services.sh"' EXIT
"$root/target/$profile/orchestrator" --config "${HEIST_CONFIG:-$root/orchestrator/heist.yaml}" \
  --spool "${HEIST_RUN_DIR:-$root/run}/audit.spool" run "$@"
