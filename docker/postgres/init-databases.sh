#!/usr/bin/env bash
# Creates the two databases of the Compose setup, once, when the postgres volume is still empty:
# `onboarding` (the tracker, the one source of truth) and `prefect` (Prefect's run history only),
# each owned by its own role. The postgres image runs this from /docker-entrypoint-initdb.d.
# Passwords come from the container's environment (docker-compose.yml); psql quotes them.
# Safe to be sourced as well as run: no `set -u`, which would leak into the image's entrypoint.
set -eo pipefail

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v tracker_password="${TRACKER_DB_PASSWORD:?TRACKER_DB_PASSWORD is not set}" \
    -v prefect_password="${PREFECT_DB_PASSWORD:?PREFECT_DB_PASSWORD is not set}" <<'SQL'
CREATE ROLE onboarding LOGIN PASSWORD :'tracker_password';
CREATE DATABASE onboarding OWNER onboarding;
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE prefect OWNER prefect;
-- Prefect's migrations create pg_trgm; create it here as the superuser so they need not.
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL
