#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (pytest -m browser): /usr/bin/chromium,
# driven headless by Playwright with executable_path (no browser is downloaded from elsewhere).
# Idempotent and quiet: does nothing when /usr/bin/chromium exists; apt's output is shown only
# when the installation fails.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

log="$(mktemp -t install-browser.XXXXXX.log)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
  echo "install-browser: apt-get install chromium failed:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "install-browser: /usr/bin/chromium still missing after apt-get install chromium" >&2
  exit 1
fi
