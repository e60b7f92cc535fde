#!/usr/bin/env bash
# Checks the deployment artefacts with the real tools' own static checks, and runs them:
#
#   1. hadolint                     finds nothing to say about the Dockerfile;
#      docker-compose config        accepts deploy/compose.yaml (no engine needed)
#   2. promtool check config        accepts deploy/prometheus.yml
#   3. kubectl kustomize            renders deploy/k8s/base and deploy/k8s/overlays/tls (in a
#                                   temporary copy, with development Secrets from
#                                   scripts/deploy_secrets.sh), and kubernetes-validate --strict
#                                   checks every object against the Kubernetes JSON schemas
#   4. cargo test ... deploy_manifests::   starts the real binaries with exactly the commands,
#                                   environment and files the manifests give them and runs a
#                                   session through them (skipped with --static: scripts/test.sh
#                                   runs it with every other test)
#
#   scripts/check_deploy.sh             # all four
#   scripts/check_deploy.sh --static    # 1-3 (CI: scripts/test.sh calls this before its tests)
#
# Installs what it runs when missing (scripts/install_deploy_tools.sh). What is NOT checked here:
# no image is built and no container runs (no Docker engine), no cluster applies the manifests.
set -euo pipefail
cd "$(dirname "$0")/.."

static=
case "${1:-}" in
  '') ;;
  --static) static=1 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

scripts/install_deploy_tools.sh

echo "== hadolint Dockerfile"
hadolint Dockerfile

echo "== docker-compose config (deploy/compose.yaml)"
docker-compose -f deploy/compose.yaml config --quiet

echo "== promtool check config (deploy/prometheus.yml)"
promtool check config deploy/prometheus.yml >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r deploy/k8s "$work/k8s"
rm -rf "$work/k8s/base/secrets" "$work/k8s/overlays/tls/certs"
scripts/deploy_secrets.sh --k8s-dir "$work/k8s" >/dev/null
for variant in base overlays/tls; do
  echo "== kubectl kustomize deploy/k8s/$variant | kubernetes-validate --strict"
  rendered=$work/$(echo "$variant" | tr / -).yaml
  kubectl kustomize "$work/k8s/$variant" >"$rendered"
  kubernetes-validate --strict --quiet "$rendered"
  echo "   $(grep -c '^kind:' "$rendered") objects valid"
done

if [ -z "$static" ]; then
  echo "== the real binaries, as the manifests run them"
  cargo build --quiet --workspace --bins
  cargo test --quiet -p heist-e2e --test e2e -- deploy_manifests::
fi
echo "deployment checks passed"
