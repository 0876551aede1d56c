import { randomBytes } from 'node:crypto'
import type pg from 'pg'
import { hashToken } from '../domain/token.js'

export interface DemoToken {
  label: string
  token: string
  expect: string
}

/**
 * Demo users and sessions for `npm run dev`: one of each answer the service can give. Earlier demo sessions are
 * replaced on each run, so the printed tokens are the only ones that exist.
 */
export async function seedDemo(client: pg.ClientBase, schema: string): Promise<DemoToken[]> {
  const s = `"${schema}"`
  const user = async (email: string, first: string, last: string, extra = '') => {
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO ${s}.users (email, first_name, last_name, username, banned_until, deleted_at)
       VALUES ($1, $2, $3, $4, ${extra || 'NULL, NULL'})
       ON CONFLICT (email) DO UPDATE SET first_name = EXCLUDED.first_name RETURNING id`,
      [email, first, last, first.toLowerCase()],
    )
    return rows[0]!.id
  }
  const ada = await user('ada@demo.studio', 'Ada', 'Lovelace')
  const grace = await user('grace@demo.studio', 'Grace', 'Hopper')
  const banned = await user('mallory@demo.studio', 'Mallory', 'Banned', "now() + interval '7 days', NULL")
  await client.query(`DELETE FROM ${s}.user_sessions WHERE user_id = ANY($1)`, [[ada, grace, banned]])

  const tokens: DemoToken[] = []
  const session = async (label: string, expect: string, userId: string, expiresIn: string, revoked = false) => {
    const token = `demo_${randomBytes(24).toString('base64url')}`
    await client.query(
      `INSERT INTO ${s}.user_sessions (user_id, token, expires_at, revoked_at, user_agent)
       VALUES ($1, $2, now() + $3::interval, ${revoked ? 'now()' : 'NULL'}, 'npm run dev')`,
      [userId, hashToken(token), expiresIn],
    )
    tokens.push({ label, token, expect })
  }
  await session('Ada, valid for 24 h', 'valid:true', ada, '24 hours')
  await session('Grace, valid for 24 h', 'valid:true', grace, '24 hours')
  await session('Ada, expired', 'expired', ada, '-1 hour')
  await session('Grace, revoked (logged out)', 'revoked', grace, '24 hours', true)
  await session('Mallory, banned user', 'user_banned', banned, '24 hours')
  return tokens
}
