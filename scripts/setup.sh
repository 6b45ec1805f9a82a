#!/usr/bin/env bash
# One-time machine setup used by the README and CI: Debian packages for the
# libtorch backend and the Python reference side, then the npm workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# libtorch (C++), gloo headers for c10d, a fast BLAS, and python3-torch for
# numerics/interop references, chromium for the dashboard's browser test.
# Skipped when already present.
APT_PKGS="libtorch-dev libgloo-dev libopenblas0 python3-torch chromium iproute2"
missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing Debian packages:$missing"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# Python references (torch 2.x CPU, accelerate, safetensors) for interop tests
# and benchmarks; optional: tests that need it skip with a reason without it.
echo "setup: Python reference venv (.venv-py)"
bash scripts/setup-python.sh >/dev/null || echo "setup: Python references unavailable; interop tests will be skipped"

echo "setup: npm ci"
npm ci --no-audit --no-fund
