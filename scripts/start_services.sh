#!/usr/bin/env bash
# Starts the whole mesh in the background: OAuth (8001), the three tool
# services in the seed's layout (calculator 8002, file_reader 8003,
# database_query 8004), Memory (8005) and Audit (8006). Logs, pid files, the
# signing key and the audit database go to the run directory. Waits until
# every service reports SERVING over the gRPC health protocol.
#
#   scripts/start_services.sh            # build (release) if needed, start
#   HEIST_RUN_DIR=/tmp/heist scripts/start_services.sh
#   scripts/start_services.sh --postgres postgres://heist:PW@db:5432/heist --redis redis://:PW@cache:6379/
#   scripts/start_services.sh --tls      # mutual TLS on every hop, certificates in run/certs
#
# With --postgres, Audit stores in that PostgreSQL database instead of
# run/heist_audit.db, and OAuth keeps its revocations there; with --redis,
# Memory keeps its turns in that Redis (and OAuth its revocations, when no
# --postgres is given). The URLs reach the services through the environment
# (HEIST_AUDIT_STORE, HEIST_MEMORY_STORE, HEIST_OAUTH_REVOCATIONS), not the
# command line, so their passwords do not show in `ps`.
#
# With --tls, every service serves mutual TLS with its certificate from
# run/certs (made by scripts/dev_certs.sh when missing; the three tool
# services share `tools`), takes only clients the development CA signed, and
# calls OAuth over https; the health check below goes over TLS too. Call the
# services with grpcurl -cacert run/certs/ca.pem -cert run/certs/orchestrator.pem
# -key run/certs/orchestrator-key.pem 127.0.0.1:8006 list.
#
# Stop with scripts/stop_services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

postgres_url=
redis_url=
tls=
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) [ $# -ge 2 ] || { echo "error: --postgres needs a URL (postgres://USER:PASSWORD@HOST:PORT/DB)" >&2; exit 2; }
                postgres_url=$2; shift 2 ;;
    --redis) [ $# -ge 2 ] || { echo "error: --redis needs a URL (redis://:PASSWORD@HOST:PORT/)" >&2; exit 2; }
             redis_url=$2; shift 2 ;;
    --tls) tls=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$postgres_url" in ''|postgres://*|postgresql://*) ;; *) echo "error: --postgres wants a postgres:// URL, not $postgres_url" >&2; exit 2 ;; esac
case "$redis_url" in ''|redis://*) ;; *) echo "error: --redis wants a redis:// URL, not $redis_url" >&2; exit 2 ;; esac
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

# name, binary, port, certificate, extra arguments
services=(
  "oauth|heist-oauth|8001|oauth|--key-file $run_dir/oauth_signing.key"
  "calculator|heist-tools|8002|tools|--tools calculator"
  "file_reader|heist-tools|8003|tools|--tools file_reader --documents-dir $root/services/tools/documents"
  "database_query|heist-tools|8004|tools|--tools database_query --intel-db $run_dir/intel.db"
  "memory|heist-memory|8005|memory|"
  "audit|heist-audit|8006|audit|--key-file $run_dir/audit_signing.key"
)

# Mutual TLS: the development CA and a certificate per service.
certs=$run_dir/certs
health_tls=()
if [ -n "$tls" ]; then
  if [ ! -e "$certs/ca.pem" ]; then
    HEIST_RUN_DIR=$run_dir HEIST_SKIP_BUILD=1 HEIST_PROFILE=$profile "$root/scripts/dev_certs.sh" >/dev/null
  fi
  export HEIST_OAUTH_URL=https://$host:8001
  health_tls=(--tls-ca "$certs/ca.pem" --tls-cert "$certs/orchestrator.pem" --tls-key "$certs/orchestrator-key.pem")
  echo tls >"$run_dir/transport"
else
  echo plaintext >"$run_dir/transport"
fi
tls_args() {
  [ -n "$tls" ] || return 0
  echo "--tls-cert $certs/$1.pem --tls-key $certs/$1-key.pem --tls-ca $certs/ca.pem --tls-client-ca $certs/ca.pem"
}

# Where the state lives: the embedded defaults, or the engines given.
export HEIST_AUDIT_STORE=${postgres_url:-sqlite:$run_dir/heist_audit.db}
export HEIST_MEMORY_STORE=${redis_url:-memory}
revocations=${postgres_url:-${redis_url:-$run_dir/oauth_revoked.log}}
export HEIST_OAUTH_REVOCATIONS=$revocations

for entry in "${services[@]}"; do
  IFS='|' read -r name binary port cert extra <<<"$entry"
  # shellcheck disable=SC2086 # extra and tls_args hold several arguments
  nohup "$bin/$binary" --listen "$host:$port" $extra $(tls_args "$cert") >"$run_dir/$name.log" 2>&1 &
  echo $! >"$run_dir/$name.pid"
done

echo "⏳ Waiting for every service to report SERVING..."
deadline=$((SECONDS + ${HEIST_START_TIMEOUT:-60}))
until "$bin/orchestrator" --config "${HEIST_CONFIG:-$root/orchestrator/heist.yaml}" "${health_tls[@]}" health >"$run_dir/health.txt" 2>&1; do
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
  IFS='|' read -r name binary port cert extra <<<"$entry"
  printf '%-16s %-22s %-8s %s\n' "$name" "$host:$port" "$(cat "$run_dir/$name.pid")" "$run_dir/$name.log"
done
echo
if [ -n "$postgres_url" ]; then
  echo "✅ The mesh is up. Audit and revocations: PostgreSQL at ${postgres_url##*@}"
else
  echo "✅ The mesh is up. Audit database: $run_dir/heist_audit.db"
fi
[ -z "$redis_url" ] || echo "   Memory: Redis at ${redis_url##*@}"
[ -z "$tls" ] || echo "   Mutual TLS on every hop; certificates in $certs"
