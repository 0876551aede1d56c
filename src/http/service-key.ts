import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { Errors } from '../errors.js'

// The auth scheme name is case-insensitive (RFC 7235 §2.1): "bearer k" is as good as "Bearer k".
const BEARER = /^bearer[ \t]+(.*)$/is

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
    const presented = (typeof header === 'string' ? BEARER.exec(header)?.[1]?.trim() : undefined) ?? ''
    const candidate = digest(presented)
    let matched = false
    for (const expected of digests) matched = timingSafeEqual(candidate, expected) || matched
    if (!matched || presented.length === 0) throw new Errors.Unauthorized()
  }
}
