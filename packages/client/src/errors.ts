/**
 * Typed errors. Every failure the client reports is one of these; none of them means "logged out" (only an answer
 * of `valid: false` does). Compare `kind` (what to do) or `code` (the service's stable code), never messages.
 *
 * - unavailable: the service could not answer (503, a proxy's 502/504, reset, refused, or the deadline passed).
 * - configuration: the service key was refused (401).
 * - request: the request was refused as malformed (400/404/415); `badToken` when no session can have the token.
 * - server: the service failed permanently (500 INTERNAL_ERROR or SESSION_STORE_MISCONFIGURED).
 */
export type SessionServiceErrorKind = 'unavailable' | 'configuration' | 'request' | 'server'

export interface SessionServiceErrorDetails {
  status?: number
  code?: string
  requestId: string
  attempts: number
  /** The service's Retry-After, in ms, when it sent one. */
  retryAfterMs?: number
  cause?: unknown
}

export class SessionServiceError extends Error {
  override name = 'SessionServiceError'
  readonly status: number | undefined
  readonly code: string | undefined
  readonly requestId: string
  readonly attempts: number
  readonly retryAfterMs: number | undefined

  constructor(
    readonly kind: SessionServiceErrorKind,
    message: string,
    details: SessionServiceErrorDetails,
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.status = details.status
    this.code = details.code
    this.requestId = details.requestId
    this.attempts = details.attempts
    this.retryAfterMs = details.retryAfterMs
  }
}

export class SessionServiceUnavailableError extends SessionServiceError {
  override name = 'SessionServiceUnavailableError'
  constructor(
    /** timeout: the deadline passed; transport: no HTTP answer (reset, refused); status: a 502/503/504 answer. */
    readonly reason: 'timeout' | 'transport' | 'status',
    message: string,
    details: SessionServiceErrorDetails,
  ) {
    super('unavailable', message, details)
  }
}

export class SessionServiceConfigError extends SessionServiceError {
  override name = 'SessionServiceConfigError'
  constructor(message: string, details: SessionServiceErrorDetails) {
    super('configuration', message, details)
  }
}

export class SessionServiceRequestError extends SessionServiceError {
  override name = 'SessionServiceRequestError'
  constructor(
    /** True for the TOKEN_* codes: no session can have this token. */
    readonly badToken: boolean,
    message: string,
    details: SessionServiceErrorDetails,
  ) {
    super('request', message, details)
  }
}

export class SessionServiceServerError extends SessionServiceError {
  override name = 'SessionServiceServerError'
  constructor(message: string, details: SessionServiceErrorDetails) {
    super('server', message, details)
  }
}

/**
 * `invalidate({ revoke: true })` did not get its 200 before the deadline: `revoked_at` may NOT have been set, and the
 * session may validate again once the tombstone expires (CACHE_TOMBSTONE_TTL_SECONDS). `cause` is the last failure;
 * `kind` is its kind. The caller must retry the revoke (it is idempotent) or surface the failure.
 */
export class RevokeNotConfirmedError extends SessionServiceError {
  override name = 'RevokeNotConfirmedError'
  constructor(readonly last: SessionServiceError) {
    super(last.kind, `The revoke may not have happened (${last.message}); retry it until it succeeds`, {
      status: last.status,
      code: last.code,
      requestId: last.requestId,
      attempts: last.attempts,
      retryAfterMs: last.retryAfterMs,
      cause: last,
    })
  }
}

export const isSessionServiceError = (err: unknown): err is SessionServiceError => err instanceof SessionServiceError
