#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test (tests/e2e/test_dashboard_browser.py),
# which drives /usr/bin/chromium through Playwright. Playwright's own browser download is never
# used: the machines that run the tests reach package registries only. Idempotent: does nothing
# when /usr/bin/chromium is already there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
