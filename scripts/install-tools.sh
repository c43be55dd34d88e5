#!/usr/bin/env bash
# Installs the tools the deployment checks (tests/deploy) run, from Debian's packages:
# promtool (package prometheus: `promtool check rules`, `promtool test rules`) and kubectl
# (package kubernetes-client, only when no kubectl is on PATH; `kubectl kustomize` renders the
# manifests). hadolint and kubernetes-validate come with the dev extras. Also node-jose (the
# `jose` JWT library for Node.js, Debian's package) that docs/applications.md's JavaScript
# minting example imports (tests/e2e/test_access_e2e.py runs it with the machine's node).
# And coturn (`turnserver`, `turnutils_uclient`): tests/e2e/test_ice_turn.py checks the TURN
# credentials of join answers against a real one on loopback.
# Idempotent: installs nothing when all are there.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
[ -f /usr/share/nodejs/jose/package.json ] || need+=(node-jose)
command -v turnserver >/dev/null 2>&1 || need+=(coturn)

if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
echo "promtool: $(promtool --version 2>&1 | head -n 1)"
echo "kubectl: $(kubectl version --client 2>&1 | head -n 1)"
echo "node: $(node --version 2>&1), jose $(sed -n 's/^ *"version": "\(.*\)",$/\1/p' /usr/share/nodejs/jose/package.json)"
echo "coturn: $(turnserver --version 2>&1 | head -n 1)"
