import { randomUUID } from 'node:crypto'
import { Client, Pool, type Dispatcher } from 'undici'
import { createRetryBudget, type RetryBudgetOptions } from './budget.js'
import { actionFor, CODE_ACTIONS, type CallerAction, type ErrorCode } from './codes.js'
import { DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, DEFAULT_DEADLINE_MS, DEFAULT_REVOKE_DEADLINE_MS } from './deadline.js'
import {
  RevokeNotConfirmedError,
  SessionServiceConfigError,
  SessionServiceError,
  SessionServiceRequestError,
  SessionServiceServerError,
  SessionServiceUnavailableError,
} from './errors.js'
import type { components } from './generated/openapi.js'
import { startCallSpan } from './tracing.js'

type Schemas = components['schemas']
export type ValidateResponse = Schemas['ValidateResponse']
export type ValidSession = Schemas['ValidSession']
export type InvalidSession = Schemas['InvalidSession']
export type InvalidateRequest = Schemas['InvalidateRequest']
export type InvalidateResponse = Schemas['InvalidateResponse']
export type HealthReport = Schemas['HealthReport'] | Schemas['HealthReportFailure']

/** An answer from the caller's fallback is marked so: it did not come from the service. */
export type ValidateResult = ValidateResponse | (Omit<ValidSession, 'source'> & { source: 'fallback' }) | (InvalidSession & { fallback: true })

export interface SessionClientLogger {
  warn(fields: Record<string, unknown>, message: string): void
}

export interface SessionClientOptions {
  /** The service's base URL (one origin; a load balancer in front of the instances). */
  baseUrl: string
  /** One of the service's SERVICE_API_KEYS (sent as a bearer token on every call). */
  serviceKey?: string
  /** Whole-call deadline, retries included (default 6 s, from the service's worst case: deadline.ts). */
  deadlineMs?: number
  /** Deadline of `invalidate({ revoke: true })`, retried until 200 or this (default 20 s). */
  revokeDeadlineMs?: number
  /**
   * On a 503 other than SHUTTING_DOWN (and a proxy's 502/504): 'backoff' (default) retries with jittered backoff, no
   * sooner than Retry-After, within the deadline; 'throw' hands the caller a typed error carrying `retryAfterMs`.
   */
  onUnavailable?: 'backoff' | 'throw'
  backoff?: { baseMs?: number; maxMs?: number }
  /** Shared by every call of this client, so an outage cannot turn into a retry storm. */
  retryBudget?: RetryBudgetOptions
  /** Hedge `validate`: a second request after this many ms without an answer; the first answer wins. Off by default. */
  hedgeAfterMs?: number
  /**
   * Asked only when the service cannot answer (unavailable, or a 500): e.g. the Studio's own Postgres validation.
   * Counted (`metrics().fallbacks`) and logged. Never asked for a 4xx.
   */
  fallback?: (token: string, error: SessionServiceError) => Promise<ValidateResponse>
  /** Keep-alive connections to the service (default 32). */
  connections?: number
  logger?: SessionClientLogger
}

export interface CallOptions {
  /** Sent as X-Request-Id (a UUID is generated otherwise); errors carry it. */
  requestId?: string
  /** W3C trace context to forward when OpenTelemetry is not installed (with it, the active context is injected). */
  traceparent?: string
  tracestate?: string
  signal?: AbortSignal
  deadlineMs?: number
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: unknown
}

type Outcome = { answer: Answer; error?: undefined } | { answer?: undefined; error: Error }

/** Transport failures where the request never got an answer and trying again on a new connection is the cure. */
const CONNECTION_ERRORS = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'ECONNABORTED'])

const errorCode = (err: Error): string | undefined => {
  const own = (err as { code?: string }).code
  const cause = (err as { cause?: { code?: string } }).cause?.code
  return own ?? cause
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (ms <= 0) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })

function retryAfterMs(headers: Answer['headers']): number | undefined {
  const raw = headers['retry-after']
  const value = Array.isArray(raw) ? raw[0] : raw
  if (value === undefined) return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

function bodyCode(body: unknown): string | undefined {
  return body && typeof body === 'object' && typeof (body as { code?: unknown }).code === 'string' ? (body as { code: string }).code : undefined
}

export function createSessionClient(options: SessionClientOptions) {
  const origin = new URL(options.baseUrl).origin
  const basePath = new URL(options.baseUrl).pathname.replace(/\/$/, '')
  const pool = new Pool(origin, { connections: options.connections ?? 32, pipelining: 1 })
  const budget = createRetryBudget(options.retryBudget)
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS
  const revokeDeadlineMs = options.revokeDeadlineMs ?? DEFAULT_REVOKE_DEADLINE_MS
  const backoffBase = options.backoff?.baseMs ?? DEFAULT_BACKOFF_BASE_MS
  const backoffMax = options.backoff?.maxMs ?? DEFAULT_BACKOFF_MAX_MS
  const logger: SessionClientLogger = options.logger ?? { warn: (fields, message) => console.warn(`[session-client] ${message}`, fields) }
  const counts = {
    calls: 0,
    answers: 0,
    retries: 0,
    freshConnectionRetries: 0,
    budgetExhausted: 0,
    hedges: 0,
    fallbacks: 0,
    errors: { unavailable: 0, configuration: 0, request: 0, server: 0 } as Record<SessionServiceError['kind'], number>,
    sources: { l1: 0, redis: 0, postgres: 0, fallback: 0 },
    invalidations: 0,
  }
  let closed = false

  /** One HTTP exchange; never throws (a failure is an outcome). */
  async function exchange(dispatcher: Dispatcher, method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: string | undefined, signal: AbortSignal): Promise<Outcome> {
    try {
      const res = await dispatcher.request({ origin, method, path: basePath + path, headers, body, signal })
      const text = await res.body.text()
      let parsed: unknown = undefined
      if (text.length > 0) {
        try {
          parsed = JSON.parse(text)
        } catch {
          parsed = text
        }
      }
      return { answer: { status: res.statusCode, headers: res.headers, body: parsed } }
    } catch (err) {
      return { error: err as Error }
    }
  }

  /** An exchange on a connection of its own, closed after: the retry after a reset or a draining instance. */
  async function freshExchange(...args: Parameters<typeof exchange> extends [Dispatcher, ...infer R] ? R : never): Promise<Outcome> {
    const client = new Client(origin, { pipelining: 1 })
    try {
      return await exchange(client, ...args)
    } finally {
      void client.destroy().catch(() => undefined)
    }
  }

  /** ok: the answer the caller wants; final: an error not worth retrying; the others say how to retry. */
  type Kind = 'ok' | 'final' | 'retry-now' | 'retry-after'
  type Accept = (answer: Answer) => boolean
  const accept2xx: Accept = (a) => a.status >= 200 && a.status < 300

  function classify(outcome: Outcome, accept: Accept): Kind {
    if (outcome.error) {
      const code = errorCode(outcome.error)
      return code !== undefined && CONNECTION_ERRORS.has(code) ? 'retry-now' : 'retry-after'
    }
    if (accept(outcome.answer)) return 'ok'
    const action: CallerAction = actionFor(outcome.answer.status, bodyCode(outcome.answer.body))
    return action === 'retry-now' || action === 'retry-after' ? action : 'final'
  }

  function toError(outcome: Outcome, requestId: string, attempts: number, timedOut: boolean): SessionServiceError {
    if (outcome.error) {
      const code = errorCode(outcome.error)
      if (timedOut || outcome.error.name === 'AbortError' || code === 'UND_ERR_ABORTED') {
        return new SessionServiceUnavailableError('timeout', `The session service did not answer within the deadline (${attempts} attempt(s))`, {
          requestId,
          attempts,
          code,
          cause: outcome.error,
        })
      }
      return new SessionServiceUnavailableError('transport', `The session service could not be reached: ${code ?? outcome.error.message}`, {
        requestId,
        attempts,
        code,
        cause: outcome.error,
      })
    }
    const { status, body, headers } = outcome.answer
    const code = bodyCode(body)
    const message = (body && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string' ? (body as { message: string }).message : undefined) ?? `HTTP ${status}`
    const details = { status, code, requestId, attempts, retryAfterMs: retryAfterMs(headers) }
    switch (actionFor(status, code)) {
      case 'retry-now':
      case 'retry-after':
        return new SessionServiceUnavailableError('status', `The session service is unavailable: ${code ?? status} (${message})`, details)
      case 'configuration':
        return new SessionServiceConfigError(`The session service refused the service key: ${code ?? status}. Check SESSION_SERVICE_KEY against SERVICE_API_KEYS`, details)
      case 'bad-token':
        return new SessionServiceRequestError(true, `The token cannot be a session token: ${code}`, details)
      case 'bad-request':
        return new SessionServiceRequestError(false, `The session service refused the request: ${code ?? status} (${message})`, details)
      case 'fallback':
        return new SessionServiceServerError(`The session service failed: ${code ?? status} (${message})`, details)
    }
  }

  /**
   * One call: attempts until an answer that is final, the deadline, or the retry budget says stop. Retries: one
   * immediate retry on a fresh connection after a reset/refused connection or SHUTTING_DOWN; jittered backoff no
   * sooner than Retry-After for other 503s (and a proxy's 502/504, and further connection failures).
   */
  async function call(
    op: 'validate' | 'invalidate' | 'health',
    method: 'GET' | 'POST',
    path: string,
    payload: unknown,
    callOptions: CallOptions,
    policy: { deadlineMs: number; persistent: boolean; hedgeAfterMs?: number; accept?: Accept },
  ): Promise<{ answer: Answer; requestId: string; attempts: number }> {
    if (closed) throw new Error('session client is closed')
    counts.calls++
    budget.call()
    const requestId = callOptions.requestId ?? randomUUID()
    const accept = policy.accept ?? accept2xx
    const totalMs = callOptions.deadlineMs ?? policy.deadlineMs
    const startedAt = Date.now()
    // One controller and one cleared timer per call: AbortSignal.timeout() measured ~15 µs a call here, and its timer
    // lives on for the whole deadline after the answer.
    const controller = new AbortController()
    const signal = controller.signal
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, totalMs)
    const callerSignal = callOptions.signal
    const onCallerAbort = () => controller.abort(callerSignal?.reason)
    if (callerSignal?.aborted) controller.abort(callerSignal.reason)
    else callerSignal?.addEventListener('abort', onCallerAbort, { once: true })
    const headers: Record<string, string> = { 'x-request-id': requestId }
    if (payload !== undefined) headers['content-type'] = 'application/json'
    if (options.serviceKey) headers.authorization = `Bearer ${options.serviceKey}`
    if (callOptions.traceparent) headers.traceparent = callOptions.traceparent
    if (callOptions.tracestate) headers.tracestate = callOptions.tracestate
    const span = startCallSpan(`session-service ${op}`, { 'http.request.method': method, 'url.path': path, 'session_client.request_id': requestId })
    span.inject(headers)
    const body = payload === undefined ? undefined : JSON.stringify(payload)

    let attempts = 0
    let freshUsed = false
    let fresh = false
    let backoffStep = 0
    let last: Outcome | undefined
    try {
      for (;;) {
        attempts++
        const attempt = () => (fresh ? freshExchange(method, path, headers, body, signal) : exchange(pool, method, path, headers, body, signal))
        last = policy.hedgeAfterMs !== undefined && attempts === 1 ? await hedged(attempt, policy.hedgeAfterMs, signal, accept) : await attempt()
        fresh = false
        const kind = classify(last, accept)
        if (kind === 'ok' || kind === 'final') break
        if (signal.aborted) break
        if (kind === 'retry-now' && !freshUsed) {
          // A draining instance closed the connection or turned the request away: a new connection goes elsewhere.
          if (!policy.persistent && !budget.tryRetry()) {
            counts.budgetExhausted++
            break
          }
          freshUsed = true
          fresh = true
          counts.retries++
          counts.freshConnectionRetries++
          continue
        }
        const after = last.answer ? retryAfterMs(last.answer.headers) : undefined
        if (options.onUnavailable === 'throw' && !policy.persistent) break
        const cap = Math.min(backoffMax, backoffBase * 2 ** backoffStep++)
        const wait = Math.max(after ?? 0, Math.random() * cap)
        if (wait >= totalMs - (Date.now() - startedAt)) break
        if (!policy.persistent && !budget.tryRetry()) {
          counts.budgetExhausted++
          break
        }
        counts.retries++
        await sleep(wait, signal)
        if (signal.aborted) break
      }
      if (last.answer && accept(last.answer)) {
        counts.answers++
        span.end({ status: last.answer.status, attempts })
        return { answer: last.answer, requestId, attempts }
      }
      const error = toError(last, requestId, attempts, timedOut)
      counts.errors[error.kind]++
      span.end({ status: last.answer?.status, error, attempts })
      throw error
    } catch (err) {
      if (err instanceof SessionServiceError) throw err
      span.end({ error: err as Error, attempts })
      throw err
    } finally {
      clearTimeout(timer)
      callerSignal?.removeEventListener('abort', onCallerAbort)
    }
  }

  /**
   * Hedging: a second request after `afterMs` unless the first has ended; the first final answer wins (the other is
   * read and dropped). A first attempt that fails before the hedge is sent is returned at once to the retry loop.
   */
  function hedged(attempt: () => Promise<Outcome>, afterMs: number, signal: AbortSignal, accept: Accept): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let inFlight = 1
      let settled = false
      const settle = (outcome: Outcome) => {
        inFlight--
        if (settled) return
        const kind = classify(outcome, accept)
        if (kind === 'ok' || kind === 'final' || inFlight === 0) {
          settled = true
          clearTimeout(timer)
          resolve(outcome)
        }
      }
      const timer = setTimeout(() => {
        if (settled || signal.aborted) return
        counts.hedges++
        inFlight++
        void attempt().then(settle)
      }, afterMs)
      void attempt().then(settle)
    })
  }

  function validateAnswer(answer: Answer): ValidateResponse {
    const body = answer.body as ValidateResponse
    if (!body || typeof body !== 'object' || typeof body.valid !== 'boolean') {
      throw new Error(`unexpected /validate body: ${JSON.stringify(answer.body)?.slice(0, 200)}`)
    }
    return body
  }

  return {
    /**
     * `valid: false` only when the service said so. Any failure throws a SessionServiceError, or, when the service
     * could not answer (unavailable or 500) and a fallback is configured, returns the fallback's answer.
     */
    async validate(token: string, callOptions: CallOptions = {}): Promise<ValidateResult> {
      try {
        const { answer } = await call('validate', 'POST', '/validate', { token }, callOptions, {
          deadlineMs,
          persistent: false,
          hedgeAfterMs: options.hedgeAfterMs,
        })
        const result = validateAnswer(answer)
        if (result.valid) counts.sources[result.source]++
        return result
      } catch (err) {
        if (!(err instanceof SessionServiceError) || !options.fallback) throw err
        if (err.kind !== 'unavailable' && err.kind !== 'server') throw err
        counts.fallbacks++
        logger.warn(
          { requestId: err.requestId, kind: err.kind, code: err.code ?? null, status: err.status ?? null, attempts: err.attempts },
          'session service could not answer; using the fallback',
        )
        const answer = await options.fallback(token, err)
        if (answer.valid) {
          counts.sources.fallback++
          return { ...answer, source: 'fallback' }
        }
        return { ...answer, fallback: true }
      }
    },

    /**
     * Exactly one of token, sessionId, userId. Retried like validate (it is idempotent); with `revoke: true`, retried
     * until 200 or the revoke deadline, and a failure is a RevokeNotConfirmedError: the revoke may not have happened.
     */
    async invalidate(target: InvalidateRequest, callOptions: CallOptions = {}): Promise<InvalidateResponse> {
      const revoke = target.revoke === true
      try {
        const { answer } = await call('invalidate', 'POST', '/invalidate', target, callOptions, {
          deadlineMs: revoke ? revokeDeadlineMs : deadlineMs,
          persistent: revoke,
        })
        counts.invalidations++
        return answer.body as InvalidateResponse
      } catch (err) {
        if (revoke && err instanceof SessionServiceError) throw new RevokeNotConfirmedError(err)
        throw err
      }
    },

    /** GET /health/redis: the report, on 200 (healthy, degraded) and on 503 (unhealthy). */
    async health(callOptions: CallOptions = {}): Promise<{ httpStatus: number; report: HealthReport }> {
      const { answer } = await call('health', 'GET', '/health/redis', undefined, callOptions, {
        deadlineMs,
        persistent: false,
        // An unhealthy report is still a report: a 503 whose body has a `status` (and no error code).
        accept: (a) => (a.status === 200 || a.status === 503) && bodyCode(a.body) === undefined && typeof (a.body as { status?: unknown })?.status === 'string',
      })
      return { httpStatus: answer.status, report: answer.body as HealthReport }
    },

    /** Counters since creation (copies). */
    metrics() {
      return structuredClone(counts)
    },

    async close(): Promise<void> {
      closed = true
      await pool.close()
    },
  }
}

export type SessionClient = ReturnType<typeof createSessionClient>
export { CODE_ACTIONS, type ErrorCode }
