#!/usr/bin/env bash
# Starts the whole mesh in the background: OAuth (8001), the three tool
# services in the seed's layout (calculator 8002, file_reader 8003,
# database_query 8004), Memory (8005) and Audit (8006). Logs, pid files, the
# signing key and the audit database go to the run directory. Waits until
# every service reports SERVING over the gRPC health protocol.
#
#   scripts/start_services.sh            # build (release) if needed, start
#   HEIST_RUN_DIR=/tmp/heist scripts/start_services.sh
#
# Stop with scripts/stop_services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run_dir=${HEIST_RUN_DIR:-$root/run}
profile=${HEIST_PROFILE:-release}
bin="$root/target/$profile"
host=127.0.0.1

mkdir -p "$run_dir"
for pid_file in "$run_dir"/*.pid; do
  [ -e "$pid_file" ] || continue
  if kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "error: the mesh is already running ($(basename "$pid_file" .pid) has pid $(cat "$pid_file"))." >&2
    echo "       Stop it first: scripts/stop_services.sh" >&2
    exit 1
  fi
  rm -f "$pid_file"
done

if [ -n "${HEIST_SKIP_BUILD:-}" ]; then
  :  # the caller built the binaries (tests run inside cargo, which holds the build lock)
elif [ "$profile" = release ]; then
  echo "🔨 Building (release) if needed..."
  cargo build --release --quiet --workspace --bins
else
  cargo build --quiet --workspace --bins
fi

# name, binary, port, extra arguments
services=(
  "oauth|heist-oauth|8001|--key-file $run_dir/oauth_signing.key --revocations-file $run_dir/oauth_revoked.log"
  "calculator|heist-tools|8002|--tools calculator"
  "file_reader|heist-tools|8003|--tools file_reader --documents-dir $root/services/tools/documents"
  "database_query|heist-tools|8004|--tools database_query --intel-db $run_dir/intel.db"
  "memory|heist-memory|8005|"
  "audit|heist-audit|8006|--db $run_dir/heist_audit.db"
)

for entry in "${services[@]}"; do
  IFS='|' read -r name binary port extra <<<"$entry"
  # shellcheck disable=SC2086 # extra holds several arguments
  nohup "$bin/$binary" --listen "$host:$port" $extra >"$run_dir/$name.log" 2>&1 &
  echo $! >"$run_dir/$name.pid"
done

echo "⏳ Waiting for every service to report SERVING..."
deadline=$((SECONDS + ${HEIST_START_TIMEOUT:-60}))
until "$bin/orchestrator" --config "${HEIST_CONFIG:-$root/orchestrator/heist.yaml}" health >"$run_dir/health.txt" 2>&1; do
  for pid_file in "$run_dir"/*.pid; do
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      name=$(basename "$pid_file" .pid)
      echo "error: $name exited during start-up; its log ($run_dir/$name.log):" >&2
      tail -n 20 "$run_dir/$name.log" >&2
      "$root/scripts/stop_services.sh" >/dev/null 2>&1 || true
      exit 1
    fi
  done
  if [ $SECONDS -ge $deadline ]; then
    echo "error: not every service was SERVING in time:" >&2
    cat "$run_dir/health.txt" >&2
    "$root/scripts/stop_services.sh" >/dev/null 2>&1 || true
    exit 1
  fi
  sleep 0.2
done

printf '\n%-16s %-22s %-8s %s\n' SERVICE ADDRESS PID LOG
for entry in "${services[@]}"; do
  IFS='|' read -r name binary port extra <<<"$entry"
  printf '%-16s %-22s %-8s %s\n' "$name" "$host:$port" "$(cat "$run_dir/$name.pid")" "$run_dir/$name.log"
done
echo
echo "✅ The mesh is up. Audit database: $run_dir/heist_audit.db"
