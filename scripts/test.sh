#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (Debian's
# chromium and playwright-core from npm for the browser tests, Debian's php-cli
# for the PHP helper, prometheus-client and websockets from PyPI for the
# metrics format and compression tests), then runs every test.
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

if [[ "${RAKIT_SKIP_PHP:-0}" != 1 ]]; then
  if ! command -v php >/dev/null 2>&1; then
    echo "[test] installing php-cli (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends php-cli >/dev/null
  fi
  export RAKIT_REQUIRE_PHP=1
fi

if [[ "${RAKIT_SKIP_PYTHON:-0}" != 1 ]]; then
  if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    echo "[test] installing prometheus-client (PyPI)" >&2
    python3 -m pip install -q prometheus-client
  fi
  if ! python3 -c 'import websockets' >/dev/null 2>&1; then
    echo "[test] installing websockets (PyPI)" >&2
    python3 -m pip install -q 'websockets>=14'
  fi
fi

cargo test --workspace "$@"
