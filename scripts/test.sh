#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (Debian's
# chromium and playwright-core from npm for the browser tests, Debian's php-cli
# for the PHP helper, systemd for systemd-analyze, redis-server for the cluster tests, prometheus-client and websockets
# from PyPI for the metrics format and compression tests), then runs every test.
#
# RAKIT_SKIP_BROWSER/PHP/PUSHER/PYTHON/SYSTEMD=1 leave a group out (its tests say on stdout that they
# were skipped); under CI (RAKIT_CI=1, set by .ci/run) they are ignored, and a tool that is
# still missing fails its tests (tests/common/tools.rs, docs/testing.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${RAKIT_CI:-0}" == 1 ]]; then
  unset RAKIT_SKIP_BROWSER RAKIT_SKIP_PHP RAKIT_SKIP_PUSHER RAKIT_SKIP_PYTHON RAKIT_SKIP_SYSTEMD
fi

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

# The systemd unit (dist/rakit-websocket.service) is checked with `systemd-analyze verify`, which
# Debian's systemd package provides also where systemd does not run (tests/ops_install.rs).
if [[ "${RAKIT_SKIP_SYSTEMD:-0}" != 1 ]]; then
  if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "[test] installing systemd (Debian package, for systemd-analyze)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends systemd >/dev/null
  fi
  export RAKIT_REQUIRE_SYSTEMD=1
fi

# The cluster tests (tests/cluster.rs) start their own redis-server.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "[test] installing redis-server (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends redis-server >/dev/null
fi

# SPEC section 13 with the real Pusher libraries: pusher-js 8.6.0, laravel-echo 2.5.0 and the
# Node `pusher` server library (npm, pinned in tests/pusher/package-lock.json).
if [[ "${RAKIT_SKIP_PUSHER:-0}" != 1 ]]; then
  if [[ ! -d tests/pusher/node_modules/pusher-js ]]; then
    echo "[test] installing pusher-js, laravel-echo, pusher (npm)" >&2
    (cd tests/pusher && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if ! python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("pusher") != "3.3.4")' >/dev/null 2>&1; then
    echo "[test] installing pusher 3.3.4 (PyPI)" >&2
    python3 -m pip install -q pusher==3.3.4
  fi
  export RAKIT_REQUIRE_PUSHER=1
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
  export RAKIT_REQUIRE_PYTHON=1
fi

cargo test --workspace "$@"
