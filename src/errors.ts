import createError from '@fastify/error'

/**
 * The one catalogue of error codes. Codes are part of the HTTP contract (openapi.yaml lists them): compare
 * `err.code`, never classes, and never rename a code.
 */
export const Errors = {
  // 400: the request is malformed
  InvalidJson: createError('INVALID_JSON', 'Request body is not valid JSON', 400),
  BodyTooLarge: createError('BODY_TOO_LARGE', 'Request body is larger than %s bytes', 400),
  BodyNotObject: createError('BODY_NOT_OBJECT', 'Request body must be a JSON object', 400),
  TokenMissing: createError('TOKEN_MISSING', 'Field "token" is required', 400),
  TokenNotString: createError('TOKEN_NOT_STRING', 'Field "token" must be a string', 400),
  TokenEmpty: createError('TOKEN_EMPTY', 'Field "token" must not be empty', 400),
  TokenTooLong: createError('TOKEN_TOO_LONG', 'Field "token" is longer than %s characters', 400),
  TokenInvalidChars: createError('TOKEN_INVALID_CHARS', 'Field "token" may hold only printable ASCII characters', 400),
  UnknownField: createError('UNKNOWN_FIELD', 'Unknown field "%s"', 400),
  InvalidField: createError('INVALID_FIELD', 'Field "%s" %s', 400),
  TargetRequired: createError('INVALIDATE_TARGET_REQUIRED', 'Exactly one of "token", "sessionId" or "userId" is required', 400),
  TargetAmbiguous: createError('INVALIDATE_TARGET_AMBIGUOUS', 'Give only one of "token", "sessionId" or "userId"', 400),
  // 401/404/405/415
  Unauthorized: createError('UNAUTHORIZED', 'A valid service API key is required', 401),
  NotFound: createError('ROUTE_NOT_FOUND', 'Route %s %s not found', 404),
  UnsupportedMediaType: createError('UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json', 415),
  // 503: the answer cannot be known right now; never turned into valid:false
  StoreUnavailable: createError('SESSION_STORE_UNAVAILABLE', 'Session store unavailable', 503),
  CacheUnavailable: createError('SESSION_CACHE_UNAVAILABLE', 'Session cache unavailable; the invalidation will be retried', 503),
  ShuttingDown: createError('SHUTTING_DOWN', 'Service is shutting down', 503),
  // Load shedding: answered at once rather than queued, so a flood cannot starve the requests that can be served.
  StoreBusy: createError('SESSION_STORE_BUSY', 'Too many session lookups are waiting for the session store', 503),
  Overloaded: createError('OVERLOADED', 'Service is overloaded', 503),
  // 500: a bug
  Internal: createError('INTERNAL_ERROR', 'Internal error', 500),
  // 500 too, but not a bug here: the Postgres role lacks a grant or RLS hides the rows. Permanent until ops act.
  StoreMisconfigured: createError('SESSION_STORE_MISCONFIGURED', 'Session store is misconfigured (permissions)', 500),
} as const

export type ErrorCode = InstanceType<(typeof Errors)[keyof typeof Errors]>['code']

// @fastify/error sets `code` on each instance, not on the prototype, so the codes are read from one instance of each.
const CATALOGUED_CODES: ReadonlySet<string> = new Set(Object.values(Errors).map((E) => new E().code))

/** True for an error made from this catalogue: its code, status and message are already the answer. */
export function isCatalogued(err: { code?: string }): boolean {
  return err.code !== undefined && CATALOGUED_CODES.has(err.code)
}
