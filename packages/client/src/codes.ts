import type { components } from './generated/openapi.js'

export type ErrorCode = components['schemas']['ErrorCode']

/**
 * What a caller does with each answer the service can give (openapi.yaml's table, docs/client.md). The client acts on
 * `action`; `Record<ErrorCode, …>` makes a code added to openapi.yaml a compile error here until it is mapped.
 *
 * - retry-now: this instance is draining; one immediate retry on a new connection lands elsewhere.
 * - retry-after: the answer cannot be known right now; retry after Retry-After within the deadline, then fallback/error.
 * - fallback: permanent server-side failure; not retried; the caller's fallback may answer instead.
 * - configuration: the service key is wrong; not retried; page whoever owns the keys.
 * - bad-token: no session can have this token (empty, too long, bad characters); not retried.
 * - bad-request: a bug in the caller or a version mismatch; not retried.
 */
export type CallerAction = 'retry-now' | 'retry-after' | 'fallback' | 'configuration' | 'bad-token' | 'bad-request'

export const CODE_ACTIONS: Readonly<Record<ErrorCode, { status: number; action: CallerAction }>> = {
  INVALID_JSON: { status: 400, action: 'bad-request' },
  BODY_TOO_LARGE: { status: 400, action: 'bad-request' },
  BODY_NOT_OBJECT: { status: 400, action: 'bad-request' },
  TOKEN_MISSING: { status: 400, action: 'bad-token' },
  TOKEN_NOT_STRING: { status: 400, action: 'bad-token' },
  TOKEN_EMPTY: { status: 400, action: 'bad-token' },
  TOKEN_TOO_LONG: { status: 400, action: 'bad-token' },
  TOKEN_INVALID_CHARS: { status: 400, action: 'bad-token' },
  UNKNOWN_FIELD: { status: 400, action: 'bad-request' },
  INVALID_FIELD: { status: 400, action: 'bad-request' },
  INVALIDATE_TARGET_REQUIRED: { status: 400, action: 'bad-request' },
  INVALIDATE_TARGET_AMBIGUOUS: { status: 400, action: 'bad-request' },
  UNAUTHORIZED: { status: 401, action: 'configuration' },
  ROUTE_NOT_FOUND: { status: 404, action: 'bad-request' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, action: 'bad-request' },
  INTERNAL_ERROR: { status: 500, action: 'fallback' },
  SESSION_STORE_MISCONFIGURED: { status: 500, action: 'fallback' },
  SHUTTING_DOWN: { status: 503, action: 'retry-now' },
  SESSION_STORE_UNAVAILABLE: { status: 503, action: 'retry-after' },
  SESSION_CACHE_UNAVAILABLE: { status: 503, action: 'retry-after' },
  SESSION_STORE_BUSY: { status: 503, action: 'retry-after' },
  OVERLOADED: { status: 503, action: 'retry-after' },
}

/** The action for an HTTP answer, from its code when it has a known one, else from its status alone (a proxy's). */
export function actionFor(status: number, code: string | undefined): CallerAction {
  const known = code !== undefined ? CODE_ACTIONS[code as ErrorCode] : undefined
  if (known) return known.action
  if (status === 401 || status === 403) return 'configuration'
  // 502/503/504 without a code of ours come from a proxy or platform in front: the service did not answer.
  if (status === 502 || status === 503 || status === 504) return 'retry-after'
  if (status >= 500) return 'fallback'
  return 'bad-request'
}
