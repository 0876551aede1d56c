import { hash } from 'node:crypto'
import { createSessionClient, type SessionClient, type SessionClientOptions, type ValidSession } from './client.js'
import { SessionServiceError, SessionServiceRequestError } from './errors.js'

/**
 * A drop-in for the Studio's lib/api/auth/session-cache.ts: the same exported names and shapes, answered by the
 * session service. The one behaviour that differs: when the service cannot answer, these functions throw a
 * SessionServiceError (or use the configured fallback) instead of returning null, so an outage never logs users out.
 *
 * Configured from SESSION_SERVICE_URL and SESSION_SERVICE_KEY on first use, or by configureSessionCache().
 */

/** The Studio's Session (lib/api/auth/types.ts). */
export interface Session {
  id: string
  userId: string
  /** What user_sessions.token stores: the lowercase hex SHA-256 of the token. */
  token: string
  expiresAt: string
  lastActivityAt: string
  ipAddress?: string
  userAgent?: string
  createdAt: string
}

export interface SessionWithUser extends Session {
  email: string
  firstName: string | null
  lastName: string | null
  username: string | null
}

export interface StudioSessionCacheOptions extends Partial<Omit<SessionClientOptions, 'fallback'>> {
  /** Used only when the service cannot answer (e.g. the Studio's own validateSession from lib/api/auth/session). */
  fallback?: (token: string) => Promise<SessionWithUser | null>
}

/** The service's default CACHE_TTL_SECONDS, reported until a health check has read the real one. */
const DEFAULT_TTL_SECONDS = 300

let settings: StudioSessionCacheOptions = {}
let client: SessionClient | undefined
const extra = { fallbacks: 0, fallbackErrors: 0 }
let ttlSeconds = DEFAULT_TTL_SECONDS

/** Replaces the configuration (and the client built from it). Call once at start-up, or never to use the environment. */
export function configureSessionCache(options: StudioSessionCacheOptions): void {
  const old = client
  client = undefined
  settings = options
  void old?.close()
}

/** Closes the keep-alive connections (tests, graceful shutdown). */
export async function closeSessionCache(): Promise<void> {
  const old = client
  client = undefined
  await old?.close()
}

function sessionClient(): SessionClient {
  if (client) return client
  const baseUrl = settings.baseUrl ?? process.env.SESSION_SERVICE_URL
  if (!baseUrl) throw new Error('SESSION_SERVICE_URL is not set: the session service URL is required (configureSessionCache or the environment)')
  const { fallback: _fallback, ...rest } = settings
  client = createSessionClient({ ...rest, baseUrl, serviceKey: settings.serviceKey ?? process.env.SESSION_SERVICE_KEY })
  return client
}

function toSessionWithUser(answer: Pick<ValidSession, 'session' | 'user'>, token: string): SessionWithUser {
  const { session, user } = answer
  return {
    id: session.id,
    userId: session.userId,
    token: hash('sha256', token, 'hex'),
    expiresAt: session.expiresAt,
    // The Studio's type has no null here; a session never used since sign-in was last active when it was created.
    lastActivityAt: session.lastActivityAt ?? session.createdAt,
    createdAt: session.createdAt,
    email: user.email,
    firstName: user.firstName,
    lastName: user.lastName,
    username: user.username,
  }
}

function log(fields: Record<string, unknown>, message: string): void {
  if (settings.logger) settings.logger.warn(fields, message)
  else console.warn(`[session-cache] ${message}`, fields)
}

/**
 * The session and its user, or null when the service answered `valid: false` (not found, expired, revoked, banned,
 * deleted) or the token cannot be a session token (400 TOKEN_*). Throws when the service cannot answer and no
 * fallback is configured: never null for an outage.
 */
export async function validateSessionWithCache(token: string): Promise<SessionWithUser | null> {
  try {
    const answer = await sessionClient().validate(token)
    return answer.valid ? toSessionWithUser(answer, token) : null
  } catch (err) {
    if (err instanceof SessionServiceRequestError && err.badToken) return null
    if (err instanceof SessionServiceError && (err.kind === 'unavailable' || err.kind === 'server') && settings.fallback) {
      extra.fallbacks++
      log({ requestId: err.requestId, kind: err.kind, code: err.code ?? null, status: err.status ?? null }, 'session service could not answer; using the fallback')
      try {
        return await settings.fallback(token)
      } catch (fallbackError) {
        extra.fallbackErrors++
        throw fallbackError
      }
    }
    throw err
  }
}

/**
 * Revokes one session (sets revoked_at, and no cache answers for it from then on). True when a session was revoked,
 * false when none was (unknown, or already revoked). `token` is accepted for the Studio's signature; the session id
 * is enough. Throws RevokeNotConfirmedError when the service could not confirm it: the revoke may not have happened.
 */
export async function revokeSessionWithCache(sessionId: string, _token?: string): Promise<boolean> {
  const { revoked } = await sessionClient().invalidate({ sessionId, revoke: true })
  return revoked > 0
}

/** Revokes every session of a user; the number revoked. Throws RevokeNotConfirmedError as above. */
export async function revokeAllUserSessionsWithCache(userId: string): Promise<number> {
  const { revoked } = await sessionClient().invalidate({ userId, revoke: true })
  return revoked
}

/** True when the service reports itself healthy or degraded (it answers); false when unhealthy or unreachable. */
export async function sessionCacheHealthCheck(): Promise<boolean> {
  try {
    const { httpStatus, report } = await sessionClient().health()
    const ttl = (report as { sessionCache?: { metrics?: { ttl?: unknown } } }).sessionCache?.metrics?.ttl
    if (typeof ttl === 'number') ttlSeconds = ttl
    return httpStatus === 200
  } catch {
    return false
  }
}

/**
 * The Studio's metrics shape, counted by this process's client: hits are answers from the service's cache tiers (l1,
 * redis), misses the answers it read from Postgres. `ttl` is the service's CACHE_TTL_SECONDS as last seen by
 * sessionCacheHealthCheck (its default, 300, before).
 */
export function getSessionCacheMetrics() {
  const m = client?.metrics()
  const hits = m ? m.sources.l1 + m.sources.redis : 0
  const misses = m ? m.sources.postgres : 0
  const total = hits + misses
  const errors = m ? Object.values(m.errors).reduce((a, b) => a + b, 0) : 0
  return {
    hits,
    misses,
    errors,
    invalidations: m?.invalidations ?? 0,
    total,
    hitRate: total > 0 ? Math.round((hits / total) * 10_000) / 100 : 0,
    enabled: true,
    ttl: ttlSeconds,
    fallbacks: extra.fallbacks,
    retries: m?.retries ?? 0,
  }
}
