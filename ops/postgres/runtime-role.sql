-- What the running service's Postgres role may do, and nothing more.
--
--   psql -v ON_ERROR_STOP=1 -v role=NAME -v schema=platform -f ops/postgres/runtime-role.sql
--
-- Run it as the owner of the schema's tables (the role that ran `npm run migrate`), after the migration, for an
-- existing LOGIN role that is neither a superuser nor the tables' owner. Running it again changes nothing. With
-- MIGRATION_DATABASE_URL set, `npm run migrate` runs this same file for DATABASE_URL's role (docs/operations.md).
--
-- Privileges: REVOKE ALL first, so the role ends with exactly this list whatever it had before.
--   users          SELECT of the columns an answer carries (id, email, names, username, banned_until, deleted_at)
--   user_sessions  SELECT of id, user_id, token (the SHA-256 hex), created_at, expires_at, last_activity_at,
--                  revoked_at; UPDATE of revoked_at (POST /invalidate with revoke) and last_activity_at (activity).
--                  Never refresh_token, ip_address or user_agent.
--   session_cache_outbox        SELECT (the revocation feed) and DELETE (pruning)
--   session_cache_outbox_state  SELECT and UPDATE (the pruning high-water mark)
--
-- Row-level security: the Studio enables it on users and user_sessions with policies that show a role only the rows
-- of app.current_user_id. The service must see every row (a hidden row would answer a live session "not_found").
-- This file adds policies for this one role (SELECT on both tables, UPDATE on user_sessions) rather than granting
-- BYPASSRLS: BYPASSRLS is a role attribute that would lift row security on every table of every schema the role can
-- read (billing, credentials, ...), and needs a superuser to set; a policy is scoped to these two tables and these
-- commands, and is created by the tables' owner. On a database without row-level security the policies are inert.
BEGIN;

SET LOCAL session_cache.runtime_role = :'role';
SET LOCAL session_cache.schema = :'schema';

DO $runtime_role$
DECLARE
  r text := current_setting('session_cache.runtime_role');
  s text := current_setting('session_cache.schema');
  info record;
  tables text[] := ARRAY['users', 'user_sessions', 'session_cache_outbox', 'session_cache_outbox_state'];
  t text;
BEGIN
  SELECT rolsuper, rolcanlogin, rolbypassrls INTO info FROM pg_roles WHERE rolname = r;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'role "%" does not exist: create it first (CREATE ROLE ... LOGIN PASSWORD ...)', r;
  END IF;
  IF info.rolsuper THEN
    RAISE EXCEPTION 'role "%" is a superuser: run the service as a role of its own, never a superuser', r;
  END IF;
  IF NOT info.rolcanlogin THEN
    RAISE EXCEPTION 'role "%" cannot log in: ALTER ROLE % LOGIN', r, r;
  END IF;
  FOREACH t IN ARRAY tables LOOP
    IF to_regclass(format('%I.%I', s, t)) IS NULL THEN
      RAISE EXCEPTION 'table %.% does not exist: run npm run migrate first', s, t;
    END IF;
    IF pg_has_role(r, (SELECT relowner FROM pg_class WHERE oid = to_regclass(format('%I.%I', s, t))), 'USAGE') THEN
      RAISE EXCEPTION 'role "%" owns (or acts as the owner of) %.%: owners pass row-level security and can drop the '
        'tables; run the service as another role', r, s, t;
    END IF;
    EXECUTE format('REVOKE ALL ON %I.%I FROM %I', s, t, r);
  END LOOP;

  EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, r);
  EXECUTE format('GRANT SELECT (id, email, first_name, last_name, username, banned_until, deleted_at) ON %I.users TO %I', s, r);
  EXECUTE format('GRANT SELECT (id, user_id, token, created_at, expires_at, last_activity_at, revoked_at) ON %I.user_sessions TO %I', s, r);
  EXECUTE format('GRANT UPDATE (revoked_at, last_activity_at) ON %I.user_sessions TO %I', s, r);
  EXECUTE format('GRANT SELECT, DELETE ON %I.session_cache_outbox TO %I', s, r);
  EXECUTE format('GRANT SELECT, UPDATE ON %I.session_cache_outbox_state TO %I', s, r);

  -- One policy per role and command, named after the role, so that several service roles can coexist.
  EXECUTE format('DROP POLICY IF EXISTS %I ON %I.users', left('session_cache_read_' || r, 63), s);
  EXECUTE format('CREATE POLICY %I ON %I.users FOR SELECT TO %I USING (true)', left('session_cache_read_' || r, 63), s, r);
  EXECUTE format('DROP POLICY IF EXISTS %I ON %I.user_sessions', left('session_cache_read_' || r, 63), s);
  EXECUTE format('CREATE POLICY %I ON %I.user_sessions FOR SELECT TO %I USING (true)', left('session_cache_read_' || r, 63), s, r);
  EXECUTE format('DROP POLICY IF EXISTS %I ON %I.user_sessions', left('session_cache_update_' || r, 63), s);
  EXECUTE format('CREATE POLICY %I ON %I.user_sessions FOR UPDATE TO %I USING (true) WITH CHECK (true)',
    left('session_cache_update_' || r, 63), s, r);

  RAISE NOTICE 'role "%" may now run the session cache on schema "%"', r, s;
END
$runtime_role$;

COMMIT;
