#!/usr/bin/env bash
# Stops the services started by scripts/start_services.sh: SIGTERM (they
# drain and flush), then SIGKILL after a grace period, and removes pid files.
set -uo pipefail
cd "$(dirname "$0")/.."
run_dir=${HEIST_RUN_DIR:-$(pwd)/run}
grace=${HEIST_STOP_GRACE:-10}

shopt -s nullglob
pid_files=("$run_dir"/*.pid)
if [ ${#pid_files[@]} -eq 0 ]; then
  echo "Nothing to stop (no pid files in $run_dir)."
  exit 0
fi

for pid_file in "${pid_files[@]}"; do
  kill -TERM "$(cat "$pid_file")" 2>/dev/null || true
done
deadline=$((SECONDS + grace))
for pid_file in "${pid_files[@]}"; do
  pid=$(cat "$pid_file")
  name=$(basename "$pid_file" .pid)
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "⚠️  $name (pid $pid) did not stop in ${grace}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  else
    echo "🛑 $name stopped"
  fi
  rm -f "$pid_file"
done
