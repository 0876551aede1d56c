import { createHash } from 'node:crypto'

/**
 * The only form in which a token travels past the HTTP edge: lowercase hex SHA-256, the same form the Studio stores
 * in user_sessions.token.
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}
