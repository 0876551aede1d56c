#!/bin/sh
# docker-compose.yml's postgres runs this once, on an empty data directory, as the superuser POSTGRES_USER: it creates
# the service's LOGIN role with no privileges. The migrate job then grants it exactly what the service needs
# (ops/postgres/runtime-role.sql, applied by `node dist/store/migrate-cli.js` with MIGRATION_DATABASE_URL).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v password="$SESSION_CACHE_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE session_cache LOGIN PASSWORD %L', :'password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'session_cache')
\gexec
SQL
