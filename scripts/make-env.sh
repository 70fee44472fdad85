#!/usr/bin/env bash
# Write the .env file docker-compose.yml needs, with fresh random values: the three database
# passwords and the tracker's secret key. Nothing secret is kept in the repository (.env is in
# .gitignore), and an existing file is never overwritten: the database passwords are fixed when
# the postgres volume is first created, so new ones would lock the services out of their data.
# An existing file is left as it is with a note (exit 0), so the line below works every time.
#
#   scripts/make-env.sh && docker compose up -d
#   scripts/make-env.sh path/to/other.env      # write somewhere else
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-${root}/.env}"

if [ -e "${target}" ]; then
  echo "${target} exists already; not overwriting it (remove it first to start afresh)." >&2
  exit 0
fi

# Hex digits only: safe inside database URLs, .env files and shell quoting alike.
random_hex() {  # number of random bytes
  if command -v python3 >/dev/null 2>&1; then
    python3 -c "import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))" "$1"
  elif command -v openssl >/dev/null 2>&1; then
    openssl rand -hex "$1"
  else
    od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
    echo
  fi
}

umask 077  # readable by its owner only
tmp="$(mktemp "${target}.XXXXXX")"
trap 'rm -f "${tmp}"' EXIT
{
  echo "# Written by scripts/make-env.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Secret: never commit it."
  echo "# The database passwords are set when the postgres volume is first created; changing"
  echo "# them here afterwards locks the services out until the roles get the new ones too."
  echo "POSTGRES_PASSWORD=$(random_hex 24)"
  echo "TRACKER_DB_PASSWORD=$(random_hex 24)"
  echo "PREFECT_DB_PASSWORD=$(random_hex 24)"
  echo "ONBOARDING_SECRET_KEY=$(random_hex 32)"
} >"${tmp}"
# A hard link fails if the target appeared meanwhile: never overwrite, even in a race.
if ! ln "${tmp}" "${target}" 2>/dev/null; then
  echo "could not create ${target} (does it exist now?); not overwriting it." >&2
  exit 1
fi
echo "Wrote ${target} with fresh random passwords and secret key (mode 600)."
