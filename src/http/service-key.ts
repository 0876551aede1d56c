import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { Errors } from '../errors.js'

const digest = (value: string) => createHash('sha256').update(value).digest()

/**
 * Checks `Authorization: Bearer <key>` against every configured key in constant time: each comparison is between two
 * SHA-256 digests of equal length, and every key is compared whatever the earlier results were. Several keys are
 * accepted at once so that one can be rotated without downtime.
 */
export function serviceKeyCheck(keys: readonly string[]) {
  const digests = keys.map(digest)
  return async function requireServiceKey(request: FastifyRequest): Promise<void> {
    const header = request.headers.authorization
    const presented = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7).trim() : ''
    const candidate = digest(presented)
    let matched = false
    for (const expected of digests) matched = timingSafeEqual(candidate, expected) || matched
    if (!matched || presented.length === 0) throw new Errors.Unauthorized()
  }
}
