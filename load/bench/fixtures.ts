import { randomBytes, randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import pg from 'pg'
import { hashToken } from '../../src/domain/token.js'
import { migrate } from '../../src/store/migrate.js'

/**
 * The data the Node-run load scripts (npm run bench, bench:client, bench:hot, bench:recovery, soak) work on: a schema
 * of their own in the shared Postgres, filled with sessions of one day, and removed afterwards with the Redis keys
 * under the run's prefix.
 */
export interface SeededSession {
  token: string
  sessionId: string
  userId: string
}

/** Runs `fn` on a connection of its own, closed afterwards. */
export async function withDatabase<T>(databaseUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** Migrates `schema` (idempotent), so a script can seed it right away. */
export const migrateSchema = (databaseUrl: string, schema: string) => withDatabase(databaseUrl, (client) => migrate(client, schema))

/** `count` users with one session each (valid for a day, or already revoked), in two statements. */
export async function seedSessions(
  client: pg.Client,
  schema: string,
  count: number,
  options: { tokenPrefix: string; revoked?: boolean },
): Promise<SeededSession[]> {
  const tokens = Array.from({ length: count }, () => `${options.tokenPrefix}_${randomBytes(24).toString('base64url')}`)
  const userIds = tokens.map(() => randomUUID())
  await client.query(
    `INSERT INTO "${schema}".users (id, email, first_name, last_name, username)
     SELECT id, 'load-' || id || '@example.test', 'Ada', 'Lovelace', 'ada' FROM unnest($1::uuid[]) AS id`,
    [userIds],
  )
  const { rows } = await client.query<{ id: string; user_id: string; token: string }>(
    `INSERT INTO "${schema}".user_sessions (user_id, token, expires_at, revoked_at)
     SELECT id, hash, now() + interval '1 day', ${options.revoked ? 'now()' : 'NULL'} FROM unnest($1::uuid[], $2::text[]) AS t(id, hash)
     RETURNING id, user_id, token`,
    [userIds, tokens.map(hashToken)],
  )
  const byHash = new Map(rows.map((r) => [r.token, r]))
  return tokens.map((token) => {
    const row = byHash.get(hashToken(token))!
    return { token, sessionId: row.id, userId: row.user_id }
  })
}

/** Migrates `schema` and seeds it (see seedSessions). */
export const seedSchema = (databaseUrl: string, schema: string, count: number, options: { tokenPrefix: string; revoked?: boolean }) =>
  withDatabase(databaseUrl, async (client) => {
    await migrate(client, schema)
    return seedSessions(client, schema, count, options)
  })

export const dropSchema = (databaseUrl: string, schema: string) =>
  withDatabase(databaseUrl, async (client) => void (await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)))

/** Deletes every key under `prefix` (SCAN, so a shared Redis is never blocked). */
export async function dropKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      if (keys.length > 0) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}
