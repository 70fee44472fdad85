#!/usr/bin/env bash
# Start the machine's PostgreSQL cluster if it is installed but not running. The tests decide
# what a missing server means (a failure under CI=true, a skip elsewhere).
set -u
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  echo "Starting PostgreSQL ${version} ..."
  pg_ctlcluster --skip-systemctl-redirect "${version}" main start || true
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
    sleep 1
  done
fi
echo "PostgreSQL is not reachable on 127.0.0.1:5432." >&2
exit 0
