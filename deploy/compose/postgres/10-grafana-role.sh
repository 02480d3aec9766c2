#!/bin/sh
# First start of the database only: a login for Grafana that can read nothing yet. The
# postgres-grants job gives it SELECT on the rate rollup and the offsets once they exist.
set -eu
psql -v ON_ERROR_STOP=1 -v password="$GRAFANA_DB_PASSWORD" --username "$POSTGRES_USER" \
  --dbname "$POSTGRES_DB" <<'SQL'
create role grafana login password :'password';
grant connect on database gridgov to grafana;
grant usage on schema public to grafana;
SQL
