#!/usr/bin/env bash
# Install what the browser tests need beyond the Python venv (Playwright's Python package is in
# the lock): Debian's `chromium` at /usr/bin/chromium, apt, non-interactive, only when missing.
# A second run takes well under a second.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "browser-deps: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "browser-deps: /usr/bin/chromium missing; run as root (or: sudo apt-get install -y chromium)" >&2
  exit 1
fi
echo "browser-deps: installing Debian package chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
