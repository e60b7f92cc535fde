#!/usr/bin/env bash
# A development CA and a TLS certificate per mesh service, in one command:
# builds heist-dev-certs (release) if needed and runs it, writing to
# run/certs unless --out is given. The CA already there is kept (renewed
# certificates stay trusted); it is made when missing.
#
#   scripts/dev_certs.sh                      # run/certs: ca.pem, ca-key.pem, NAME.pem, NAME-key.pem
#   scripts/dev_certs.sh --renew oauth        # a new oauth certificate under the same CA
#   scripts/dev_certs.sh --names oauth,calculator --days 7 --out /tmp/certs
#
# Every argument goes to heist-dev-certs (see `scripts/dev_certs.sh --help`).
# HEIST_RUN_DIR moves the default to $HEIST_RUN_DIR/certs; HEIST_PROFILE picks
# the build profile (release); HEIST_SKIP_BUILD=1 uses the binary as built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${HEIST_RUN_DIR:-$root/run}
profile=${HEIST_PROFILE:-release}
bin="$root/target/$profile/heist-dev-certs"

out_given=
for arg in "$@"; do
  case "$arg" in
    --out|--out=*) out_given=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; echo ;;
  esac
done

if [ -n "${HEIST_SKIP_BUILD:-}" ]; then
  :  # the caller built the binary (tests run inside cargo, which holds the build lock)
elif [ "$profile" = release ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p heist-certs --bin heist-dev-certs
else
  cargo build --quiet --manifest-path "$root/Cargo.toml" -p heist-certs --bin heist-dev-certs
fi
[ -x "$bin" ] || { echo "error: $bin is missing; build it (cargo build -p heist-certs) or unset HEIST_SKIP_BUILD" >&2; exit 1; }

# Relative paths given with --out are the caller's: the binary runs where the
# script was started.
if [ -n "$out_given" ]; then
  exec "$bin" "$@"
else
  exec "$bin" --out "$run_dir/certs" "$@"
fi
