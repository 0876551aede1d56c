import { hash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { Errors } from '../errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Id of the service key the caller presented (SERVICE_API_KEYS / METRICS_API_KEYS), null when none was checked. */
    serviceKeyId: string | null
  }
}

// The auth scheme name is case-insensitive (RFC 7235 §2.1): "bearer k" is as good as "Bearer k".
const BEARER = /^bearer[ \t]+(.*)$/is

const digest = (value: string) => hash('sha256', value, 'buffer')

export interface NamedKey {
  id: string
  key: string
}

/**
 * Checks `Authorization: Bearer <key>` against every configured key in constant time: each comparison is between two
 * SHA-256 digests of equal length, and every key is compared whatever the earlier results were. Several keys are
 * accepted at once so that one can be rotated without downtime. On success the key's id (never the key) is put on
 * the request as `serviceKeyId`, for log lines and the audit trail.
 */
export function serviceKeyCheck(keys: readonly NamedKey[]) {
  const digests = keys.map((k) => ({ id: k.id, digest: digest(k.key) }))
  return async function requireServiceKey(request: FastifyRequest): Promise<void> {
    const header = request.headers.authorization
    const presented = (typeof header === 'string' ? BEARER.exec(header)?.[1]?.trim() : undefined) ?? ''
    const candidate = digest(presented)
    let matched: string | null = null
    for (const expected of digests) {
      if (timingSafeEqual(candidate, expected.digest)) matched = expected.id
    }
    if (matched === null || presented.length === 0) throw new Errors.Unauthorized()
    request.serviceKeyId = matched
  }
}
