import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp } from '../../support/app.js'
import { TEST_DATABASE_URL } from '../../support/env.js'
import { createStudioSchema } from '../../support/studio-schema.js'
import { studioStatements } from '../../support/studio-statements.js'
import type { TestDatabase } from '../../support/database.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

/** Runs a command and returns its exit code and output, never throwing on a non-zero exit. */
async function exec(file: string, args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(file, args, { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

const psqlRoleScript = (role: string, schema: string) =>
  exec('psql', [TEST_DATABASE_URL, '-q', '-v', 'ON_ERROR_STOP=1', '-v', `role=${role}`, '-v', `schema=${schema}`, '-f', 'ops/postgres/runtime-role.sql'])

// The deploy steps as docs/operations.md gives them: the owner migrates, the role script grants the service's role
// exactly what it needs (psql by hand, or npm run migrate with MIGRATION_DATABASE_URL), the service runs as that role.
describe("the runtime role, provisioned as an operator would on the Studio's schema", () => {
  const tag = randomBytes(4).toString('hex')
  const schema = `ssc_t_role_${tag}`
  const role = `ssc_t_svc_${tag}`
  const owner = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
  const roleUrl = (() => {
    const u = new URL(TEST_DATABASE_URL)
    u.username = role
    u.password = ''
    return u.toString()
  })()
  const can = async (sql: string) => (await owner.query<{ ok: boolean }>(sql.replaceAll('$s', schema).replaceAll('$r', role))).rows[0]!.ok

  beforeAll(async () => {
    const client = await owner.connect()
    try {
      await createStudioSchema(client, schema)
      await client.query(`CREATE ROLE "${role}" LOGIN`)
    } finally {
      client.release()
    }
  })
  afterAll(async () => {
    await owner.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await owner.query(`DROP OWNED BY "${role}"; DROP ROLE IF EXISTS "${role}"`)
    await owner.end()
  })

  it('npm run migrate with MIGRATION_DATABASE_URL migrates as the owner and grants DATABASE_URL\'s role, twice over', async () => {
    const env = { DATABASE_URL: roleUrl, MIGRATION_DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema, NODE_ENV: 'test' }
    for (let round = 0; round < 2; round++) {
      const out = await exec(`${ROOT}node_modules/.bin/node`, ['--import', 'tsx', 'src/store/migrate-cli.ts'], env)
      expect(out.code, out.stderr).toBe(0)
      expect(out.stderr).toContain(`role "${role}" granted what the service needs on "${schema}"`)
    }
    expect(await can(`SELECT has_column_privilege('$r', '"$s".user_sessions', 'revoked_at', 'UPDATE') AS ok`)).toBe(true)
    expect(await can(`SELECT has_table_privilege('$r', '"$s".session_cache_outbox', 'DELETE') AS ok`)).toBe(true)
  })

  it('the psql command grants exactly the list, whatever the role had before, and running it again changes nothing', async () => {
    await owner.query(`GRANT ALL ON "${schema}".user_sessions, "${schema}".users TO "${role}"`)
    for (let round = 0; round < 2; round++) {
      const out = await psqlRoleScript(role, schema)
      expect(out.code, out.stderr).toBe(0)
    }
    const granted = {
      'SELECT user_sessions.token': `has_column_privilege('$r', '"$s".user_sessions', 'token', 'SELECT')`,
      'SELECT users.email': `has_column_privilege('$r', '"$s".users', 'email', 'SELECT')`,
      'UPDATE user_sessions.revoked_at': `has_column_privilege('$r', '"$s".user_sessions', 'revoked_at', 'UPDATE')`,
      'UPDATE user_sessions.last_activity_at': `has_column_privilege('$r', '"$s".user_sessions', 'last_activity_at', 'UPDATE')`,
      'SELECT, DELETE outbox': `has_table_privilege('$r', '"$s".session_cache_outbox', 'SELECT, DELETE')`,
      'UPDATE outbox state': `has_table_privilege('$r', '"$s".session_cache_outbox_state', 'UPDATE')`,
    }
    const refused = {
      'SELECT user_sessions.refresh_token': `has_column_privilege('$r', '"$s".user_sessions', 'refresh_token', 'SELECT')`,
      'SELECT user_sessions.ip_address': `has_column_privilege('$r', '"$s".user_sessions', 'ip_address', 'SELECT')`,
      'SELECT users.password_hash': `has_column_privilege('$r', '"$s".users', 'password_hash', 'SELECT')`,
      'UPDATE user_sessions.token': `has_column_privilege('$r', '"$s".user_sessions', 'token', 'UPDATE')`,
      'UPDATE user_sessions.expires_at': `has_column_privilege('$r', '"$s".user_sessions', 'expires_at', 'UPDATE')`,
      'INSERT user_sessions': `has_table_privilege('$r', '"$s".user_sessions', 'INSERT')`,
      'DELETE user_sessions': `has_table_privilege('$r', '"$s".user_sessions', 'DELETE')`,
      'UPDATE users': `has_table_privilege('$r', '"$s".users', 'UPDATE')`,
      'INSERT outbox': `has_table_privilege('$r', '"$s".session_cache_outbox', 'INSERT')`,
    }
    for (const [what, sql] of Object.entries(granted)) expect(await can(`SELECT ${sql} AS ok`), what).toBe(true)
    for (const [what, sql] of Object.entries(refused)) expect(await can(`SELECT ${sql} AS ok`), what).toBe(false)
    const { rows } = await owner.query<{ tablename: string; cmd: string; qual: string }>(
      'SELECT tablename, cmd, qual FROM pg_policies WHERE schemaname = $1 AND $2 = ANY (roles) ORDER BY tablename, cmd',
      [schema, role],
    )
    expect(rows.map((r) => `${r.tablename} ${r.cmd} ${r.qual}`)).toEqual(['user_sessions SELECT true', 'user_sessions UPDATE true', 'users SELECT true'])
  })

  it('the service runs as that role on the Studio schema: ready, sees every row, revokes', async () => {
    const db = {
      schema,
      shape: 'studio',
      url: TEST_DATABASE_URL,
      serviceUrl: roleUrl,
      role,
      pool: owner,
      query: (text: string, values: unknown[] = []) => owner.query(text.replaceAll('$schema', `"${schema}"`), values),
    } as unknown as TestDatabase
    const studio = studioStatements(db)
    const user = (await owner.query<{ id: string }>(`INSERT INTO "${schema}".users (email) VALUES ($1) RETURNING id`, [`u-${tag}@example.test`])).rows[0]!.id
    const { token, sessionId } = await studio.signin(user)
    const app = await startTestApp({ db })
    try {
      expect((await app.app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(200)
      expect((await app.validate(token)).json()).toMatchObject({ valid: true, session: { id: sessionId } })
      expect((await app.invalidate({ sessionId, revoke: true })).statusCode).toBe(200)
      expect((await app.validate(token)).json()).toEqual({ valid: false, reason: 'revoked' })
    } finally {
      await app.close()
    }
  })

  it('refuses a superuser, naming why, and changes nothing', async () => {
    const out = await psqlRoleScript('postgres', schema)
    expect(out.code).toBe(3)
    expect(out.stderr).toContain('role "postgres" is a superuser')
  })
})
