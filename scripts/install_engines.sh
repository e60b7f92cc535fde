#!/usr/bin/env bash
# Installs the engines that the tests and benchmarks start privately (each on a
# free port in a temporary directory): PostgreSQL, Redis and Prometheus (with
# its `promtool`), from Debian's packages `postgresql`, `redis-server` and
# `prometheus`; and the `sqlite3` CLI (package `sqlite3`), with which the audit
# integrity tests tamper with Audit's file. Does nothing when all are there.
# Needs root (or sudo) to install.
set -euo pipefail

missing=()
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if ! command -v redis-server >/dev/null 2>&1; then
  missing+=(redis-server)
fi
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
fi
if ! command -v sqlite3 >/dev/null 2>&1; then
  missing+=(sqlite3)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "error: ${missing[*]} missing and not root; install them: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing ${missing[*]} (Debian packages)"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
