import type pg from 'pg'

/**
 * The platform tables as the Studio's own migrations build them (its apps/studio/database/migrations: 001 and 003 for
 * the tables, 006 and 007 for row-level security), written here from what those files establish, in a schema of the
 * test's choosing. What matters to this service, each a way the Studio's database differs from this project's own:
 *
 * - ids default to uuid_generate_v4() (the uuid-ossp extension), and a session must expire after it was created;
 * - users carries updated_at; user_sessions does not, yet a BEFORE UPDATE trigger on it runs the shared function that
 *   assigns NEW.updated_at (every UPDATE of a session fails until migration 003 adds the column);
 * - row-level security is enabled (not forced) on both tables, with self-only policies for PUBLIC on a
 *   current_user_id() read from the app.current_user_id setting: any role but the owner sees none of the rows unless
 *   a policy or BYPASSRLS lets it;
 * - the Studio's indexes (token with expires_at, expires_at, last_activity_at descending, user_id).
 */
export async function createStudioSchema(client: pg.ClientBase, schema: string): Promise<void> {
  const s = `"${schema}"`
  // Two test files creating the extension at once race on pg_extension's unique index: one at a time.
  await client.query('BEGIN')
  await client.query("SELECT pg_advisory_xact_lock(hashtext('ssc-test-uuid-ossp'))")
  await client.query('CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public')
  await client.query('COMMIT')
  await client.query(`
CREATE SCHEMA ${s};

CREATE TABLE ${s}.users (
  id uuid PRIMARY KEY DEFAULT public.uuid_generate_v4(),
  email text NOT NULL UNIQUE,
  username text UNIQUE,
  first_name text,
  last_name text,
  avatar_url text,
  phone text,
  password_hash text,
  mfa_enabled boolean DEFAULT false,
  email_confirmed_at timestamptz,
  banned_until timestamptz,
  deleted_at timestamptz,
  metadata jsonb DEFAULT '{}',
  last_sign_in_at timestamptz,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  CONSTRAINT users_email_shape CHECK (email ~ '^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$'),
  CONSTRAINT users_username_shape CHECK (username IS NULL OR username ~ '^[a-zA-Z0-9_-]{3,50}$')
);
CREATE INDEX ON ${s}.users (email) WHERE deleted_at IS NULL;
CREATE INDEX ON ${s}.users (created_at);

CREATE TABLE ${s}.user_sessions (
  id uuid PRIMARY KEY DEFAULT public.uuid_generate_v4(),
  user_id uuid NOT NULL REFERENCES ${s}.users(id) ON DELETE CASCADE,
  token text NOT NULL UNIQUE,
  refresh_token text UNIQUE,
  ip_address inet,
  user_agent text,
  expires_at timestamptz NOT NULL,
  last_activity_at timestamptz DEFAULT now(),
  created_at timestamptz DEFAULT now(),
  CONSTRAINT sessions_expire_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX ON ${s}.user_sessions (user_id);
CREATE INDEX ON ${s}.user_sessions (token, expires_at);
CREATE INDEX ON ${s}.user_sessions (expires_at);
CREATE INDEX ON ${s}.user_sessions (last_activity_at DESC);

-- One function for every table's updated_at, including a table that has no such column.
CREATE FUNCTION ${s}.update_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  NEW.updated_at = now();
  RETURN NEW;
END
$fn$;
CREATE TRIGGER update_users_updated_at BEFORE UPDATE ON ${s}.users
  FOR EACH ROW EXECUTE FUNCTION ${s}.update_updated_at_column();
CREATE TRIGGER update_user_sessions_activity BEFORE UPDATE ON ${s}.user_sessions
  FOR EACH ROW EXECUTE FUNCTION ${s}.update_updated_at_column();

CREATE FUNCTION ${s}.current_user_id() RETURNS uuid LANGUAGE plpgsql STABLE SECURITY DEFINER AS $fn$
BEGIN
  RETURN nullif(current_setting('app.current_user_id', true), '')::uuid;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$fn$;

ALTER TABLE ${s}.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE ${s}.user_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY users_self_select ON ${s}.users FOR SELECT TO PUBLIC USING (id = ${s}.current_user_id());
CREATE POLICY users_self_update ON ${s}.users FOR UPDATE TO PUBLIC
  USING (id = ${s}.current_user_id()) WITH CHECK (id = ${s}.current_user_id());
CREATE POLICY sessions_self_manage ON ${s}.user_sessions FOR ALL TO PUBLIC
  USING (user_id = ${s}.current_user_id()) WITH CHECK (user_id = ${s}.current_user_id());
`)
}
