#!/usr/bin/env bash
# Install axe-core (package.json, pinned in package-lock.json) from the npm registry for the
# browser tests' accessibility check; Debian's nodejs and npm first when they are missing and we
# may (root, apt). Runs `npm ci` only when node_modules does not hold the locked version.
# The tests decide what a missing axe-core means: a failure under CI=true, a skip elsewhere.
set -u
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Node.js and npm (Debian packages) for the accessibility check ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq nodejs npm >/dev/null 2>&1 || echo "Could not install npm." >&2
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing and cannot be installed here: the accessibility check has no axe-core." >&2
  exit 0
fi
locked=$(node -e 'console.log(require("./package-lock.json").packages["node_modules/axe-core"].version)')
installed=$(node -e 'try{console.log(require("./node_modules/axe-core/package.json").version)}catch(e){}')
if [ "$locked" != "$installed" ]; then
  echo "Installing axe-core $locked (npm ci) for the accessibility check ..."
  npm ci --no-audit --no-fund --silent || echo "npm ci failed: no axe-core." >&2
fi
exit 0
