#!/usr/bin/env bash
# The test command: installs what the browser test needs (Debian's chromium,
# playwright-core from npm) when it is missing, then runs every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${RAKIT_SKIP_BROWSER:-0}" != 1 ]]; then
  if ! command -v chromium >/dev/null 2>&1; then
    echo "[test] installing chromium (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null
  fi
  if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
    echo "[test] installing playwright-core (npm)" >&2
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
  fi
  export RAKIT_REQUIRE_BROWSER=1
fi

cargo test --workspace "$@"
