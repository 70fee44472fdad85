#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests when it is missing and we may (root, apt).
# The tests decide what a missing browser means: a failure under CI=true, a skip elsewhere.
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Chromium (Debian package) for the browser tests ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq chromium >/dev/null 2>&1 || echo "Could not install chromium." >&2
else
  echo "Chromium is missing and cannot be installed here (not root or no apt-get)." >&2
fi
exit 0
