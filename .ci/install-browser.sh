#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the browser tests (pytest -m browser).
# Idempotent and quiet: does nothing when /usr/bin/chromium already exists.
# Uses only the Debian package archive (no browser downloads from elsewhere).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

if [ ! -x /usr/bin/chromium ]; then
  echo "install-browser: /usr/bin/chromium still missing after apt-get install chromium" >&2
  exit 1
fi
/usr/bin/chromium --version >&2
