-- Seeds deterministic sessions for the k6 scenarios (load/README.md). Idempotent: run it again to extend the
-- sessions' expiry. The raw tokens are `k6-token-<n>` and `k6-stampede-<n>`; like the Studio, the table stores
-- only their lowercase hex SHA-256. Loopback/compose databases only: never run this against a real platform database.
--
--   psql "$DATABASE_URL" -v count=10000 -v stampede=1000 -f load/seed.sql
--
-- Variables: count (default 10000) sessions, one user per 10 sessions; stampede (default 1000) extra sessions that
-- only stampede.ts reads, so each stampede round starts on a token nothing has cached yet. Schema: `platform`
-- (set search_path first if DATABASE_SCHEMA differs).
\if :{?count}
\else
  \set count 10000
\endif
\if :{?stampede}
\else
  \set stampede 1000
\endif

BEGIN;

INSERT INTO platform.users (email, first_name, last_name, username)
SELECT 'k6-user-' || u || '@load.test', 'Load', 'User ' || u, 'k6_user_' || u
FROM generate_series(1, (:count + 9) / 10 + 1) AS u
ON CONFLICT (email) DO NOTHING;

INSERT INTO platform.user_sessions (user_id, token, expires_at)
SELECT usr.id, encode(sha256(convert_to(t.token, 'UTF8')), 'hex'), now() + interval '7 days'
FROM (
  SELECT 'k6-token-' || n AS token, (n - 1) / 10 + 1 AS u FROM generate_series(1, :count) AS n
  UNION ALL
  SELECT 'k6-stampede-' || n, (:count + 9) / 10 + 1 FROM generate_series(1, :stampede) AS n
) AS t
JOIN platform.users AS usr ON usr.email = 'k6-user-' || t.u || '@load.test'
ON CONFLICT (token) DO UPDATE SET expires_at = EXCLUDED.expires_at, revoked_at = NULL;

COMMIT;

SELECT count(*) AS k6_sessions FROM platform.user_sessions WHERE expires_at > now();
