#!/usr/bin/env bash
# Makes the development Secrets' files of the Kubernetes manifests (never committed; see
# .gitignore), so `kubectl apply -k deploy/k8s/overlays/tls` has what it mounts:
#
#   deploy/k8s/base/secrets/oauth-signing.key   a new OAuth signing key ring (heist-oauth rotate-key)
#   deploy/k8s/base/secrets/audit-signing.key   a new Audit checkpoint key ring (heist-audit rotate-key)
#   deploy/k8s/base/secrets/engines.env         the engines' URLs (development password)
#   deploy/k8s/overlays/tls/certs/              the development CA and a certificate per service
#
#   scripts/deploy_secrets.sh                   # in deploy/k8s; keeps files that exist
#   scripts/deploy_secrets.sh --k8s-dir DIR     # in a copy of deploy/k8s (the tests use one)
#
# Existing files are kept (an existing CA keeps signing; an existing key ring is not replaced), so
# running it again changes nothing. Outside development put your own values in these files:
# engines.env with the real URLs and passwords, certs/ from your CA. Uses the binaries of
# target/$HEIST_PROFILE (default debug), building them when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

k8s_dir=deploy/k8s
while [ $# -gt 0 ]; do
  case "$1" in
    --k8s-dir) [ $# -ge 2 ] || { echo "error: --k8s-dir needs a directory" >&2; exit 2; }
               k8s_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
profile=${HEIST_PROFILE:-debug}
bin=target/$profile
if [ ! -x "$bin/heist-oauth" ] || [ ! -x "$bin/heist-audit" ] || [ ! -x "$bin/heist-dev-certs" ]; then
  if [ "$profile" = release ]; then cargo build --release --quiet -p heist-oauth -p heist-audit -p heist-certs
  else cargo build --quiet -p heist-oauth -p heist-audit -p heist-certs; fi
fi

secrets=$k8s_dir/base/secrets
mkdir -p "$secrets"
if [ ! -e "$secrets/oauth-signing.key" ]; then
  "$bin/heist-oauth" rotate-key --key-file "$secrets/oauth-signing.key" >/dev/null
fi
if [ ! -e "$secrets/audit-signing.key" ]; then
  "$bin/heist-audit" rotate-key --key-file "$secrets/audit-signing.key" >/dev/null
fi
if [ ! -e "$secrets/engines.env" ]; then
  cat >"$secrets/engines.env" <<'ENV'
HEIST_AUDIT_STORE=postgres://heist:heist-dev-password@postgres:5432/heist
HEIST_OAUTH_REVOCATIONS=postgres://heist:heist-dev-password@postgres:5432/heist
HEIST_MEMORY_STORE=redis://:heist-dev-password@redis:6379/0
ENV
  chmod 600 "$secrets/engines.env"
fi
"$bin/heist-dev-certs" --out "$k8s_dir/overlays/tls/certs" \
  --names oauth,tools,memory,audit,orchestrator >/dev/null
echo "development secrets in $secrets and $k8s_dir/overlays/tls/certs"
