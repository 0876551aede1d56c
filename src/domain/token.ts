import { hash } from 'node:crypto'

/**
 * The only form in which a token travels past the HTTP edge: lowercase hex SHA-256, the same form the Studio stores
 * in user_sessions.token. crypto.hash is the one-shot form: no Hash object per call, as createHash() would make
 * (npm run bench:hot times it: "hash").
 */
export function hashToken(token: string): string {
  return hash('sha256', token, 'hex')
}
