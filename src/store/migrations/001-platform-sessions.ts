/**
 * Creates the Studio's platform tables where they do not exist (fresh database, tests, dev) and adds only what this
 * service needs to an existing one. It never drops or rewrites Studio data, so running it again is a no-op.
 * `schema` has been checked against an identifier pattern by the config schema, and is quoted here too.
 */
export function platformSessionsMigration(schema: string): string {
  const s = `"${schema}"`
  return `
CREATE SCHEMA IF NOT EXISTS ${s};

CREATE TABLE IF NOT EXISTS ${s}.users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text NOT NULL UNIQUE,
  first_name text,
  last_name text,
  username text,
  banned_until timestamptz,
  deleted_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE ${s}.users ADD COLUMN IF NOT EXISTS banned_until timestamptz;
ALTER TABLE ${s}.users ADD COLUMN IF NOT EXISTS deleted_at timestamptz;

CREATE TABLE IF NOT EXISTS ${s}.user_sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES ${s}.users(id) ON DELETE CASCADE,
  token text NOT NULL UNIQUE,
  refresh_token text UNIQUE,
  ip_address inet,
  user_agent text,
  expires_at timestamptz NOT NULL,
  last_activity_at timestamptz DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

ALTER TABLE ${s}.user_sessions ADD COLUMN IF NOT EXISTS revoked_at timestamptz;
CREATE INDEX IF NOT EXISTS user_sessions_user_id_idx ON ${s}.user_sessions (user_id);
`
}
