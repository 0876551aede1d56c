import { outboxChannel } from '../outbox-channel.js'

/**
 * Postgres as the source of every revocation: triggers on the Studio's tables write what ended to an outbox and
 * NOTIFY its id; every instance applies the outbox to its cache (src/service/revocation-feed.ts).
 *
 * What fires, and what never does:
 * - user_sessions UPDATE: a row trigger restricted to the columns that can end a session (revoked_at set or changed,
 *   expires_at moved earlier, token or user_id changed), with a WHEN clause evaluated before any function is called.
 *   The Studio's routine writes (last_activity_at, refresh) name none of these columns, so the trigger is not even
 *   considered for them. Postgres serialises every commit that carries a NOTIFY, so routine writes must stay silent.
 * - user_sessions DELETE: one statement trigger with a transition table: one outbox row and one NOTIFY per statement,
 *   and none at all when every deleted row had already expired or been revoked (a cleanup job).
 * - users UPDATE of banned_until / deleted_at that bans (into the future) or soft-deletes; users DELETE (the cascade
 *   to user_sessions fires the session trigger too, which carries the token hashes).
 * A row that expired more than a minute before the write is skipped: every hit re-checks expiresAt, and the minute
 * absorbs clock skew between Postgres and the service.
 *
 * The functions are SECURITY DEFINER with a fixed search_path, so the Studio's role needs no privilege on the outbox.
 * Everything is CREATE ... IF NOT EXISTS / CREATE OR REPLACE: running the migration again changes nothing.
 */
export function revocationOutboxMigration(schema: string): string {
  const s = `"${schema}"`
  const channel = outboxChannel(schema).replaceAll("'", "''")
  const live = (alias: string) => `${alias}.revoked_at IS NULL AND ${alias}.expires_at > now() - interval '1 minute'`
  const fn = (name: string, body: string) => `
CREATE OR REPLACE FUNCTION ${s}.${name}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
${body}
$fn$;`
  return `
CREATE TABLE IF NOT EXISTS ${s}.session_cache_outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event text NOT NULL,
  token_hashes text[] NOT NULL DEFAULT '{}',
  session_ids uuid[] NOT NULL DEFAULT '{}',
  user_ids uuid[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS session_cache_outbox_created_at_idx ON ${s}.session_cache_outbox (created_at);

-- The highest outbox id ever pruned: an instance whose position is below it missed rows (a gap).
CREATE TABLE IF NOT EXISTS ${s}.session_cache_outbox_state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO ${s}.session_cache_outbox_state DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION ${s}.session_cache_outbox_write(p_event text, p_tokens text[], p_sessions uuid[], p_users uuid[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE new_id bigint;
BEGIN
  INSERT INTO ${s}.session_cache_outbox (event, token_hashes, session_ids, user_ids)
  VALUES (p_event, coalesce(p_tokens, '{}'), coalesce(p_sessions, '{}'), coalesce(p_users, '{}'))
  RETURNING id INTO new_id;
  -- The id only: a payload is capped at 8000 bytes, and the listener reads the row itself.
  PERFORM pg_notify('${channel}', new_id::text);
END
$fn$;
${fn(
  'session_cache_sessions_deleted',
  `DECLARE tokens text[]; ids uuid[];
BEGIN
  SELECT array_agg(o.token), array_agg(o.id) INTO tokens, ids FROM old_rows o WHERE ${live('o')};
  IF tokens IS NOT NULL THEN
    PERFORM ${s}.session_cache_outbox_write('session_deleted', tokens, ids, NULL);
  END IF;
  RETURN NULL;
END`,
)}
${fn(
  'session_cache_session_ended',
  `BEGIN
  IF OLD.expires_at > now() - interval '1 minute' THEN
    PERFORM ${s}.session_cache_outbox_write(
      CASE WHEN NEW.revoked_at IS NOT NULL THEN 'session_revoked'
           WHEN NEW.expires_at < OLD.expires_at THEN 'session_expired'
           ELSE 'session_token_changed' END,
      ARRAY[OLD.token], ARRAY[OLD.id], NULL);
  END IF;
  RETURN NULL;
END`,
)}
${fn(
  'session_cache_user_ended',
  `DECLARE tokens text[];
BEGIN
  SELECT array_agg(us.token) INTO tokens FROM ${s}.user_sessions us WHERE us.user_id = NEW.id AND ${live('us')};
  PERFORM ${s}.session_cache_outbox_write(
    CASE WHEN NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN 'user_deleted' ELSE 'user_banned' END,
    tokens, NULL, ARRAY[NEW.id]);
  RETURN NULL;
END`,
)}
${fn(
  'session_cache_users_deleted',
  `DECLARE ids uuid[];
BEGIN
  SELECT array_agg(o.id) INTO ids FROM old_rows o;
  IF ids IS NOT NULL THEN
    PERFORM ${s}.session_cache_outbox_write('user_deleted', NULL, NULL, ids);
  END IF;
  RETURN NULL;
END`,
)}

CREATE OR REPLACE TRIGGER session_cache_sessions_deleted
  AFTER DELETE ON ${s}.user_sessions REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ${s}.session_cache_sessions_deleted();

CREATE OR REPLACE TRIGGER session_cache_session_ended
  AFTER UPDATE OF revoked_at, expires_at, token, user_id ON ${s}.user_sessions
  FOR EACH ROW WHEN (
    (NEW.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
    OR NEW.expires_at < OLD.expires_at
    OR NEW.token IS DISTINCT FROM OLD.token
    OR NEW.user_id IS DISTINCT FROM OLD.user_id)
  EXECUTE FUNCTION ${s}.session_cache_session_ended();

CREATE OR REPLACE TRIGGER session_cache_user_ended
  AFTER UPDATE OF banned_until, deleted_at ON ${s}.users
  FOR EACH ROW WHEN (
    (NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL)
    OR (NEW.banned_until > now() AND NEW.banned_until IS DISTINCT FROM OLD.banned_until))
  EXECUTE FUNCTION ${s}.session_cache_user_ended();

CREATE OR REPLACE TRIGGER session_cache_users_deleted
  AFTER DELETE ON ${s}.users REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ${s}.session_cache_users_deleted();
`
}
