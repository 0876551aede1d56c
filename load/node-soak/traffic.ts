import autocannon from 'autocannon'

/**
 * The soak's traffic: one autocannon run of keep-alive connections, each request drawn from a mix of valid cached
 * tokens, unknown tokens, revoked tokens and /invalidate calls, and every answer checked against what it must be.
 * Pipelining is 1, so a connection's context holds the one request it has in flight.
 */

export type Kind = 'valid' | 'unknown' | 'revoked' | 'invalidate'

export interface TrafficOptions {
  url: string
  connections: number
  durationS: number
  maxRequests: number
  /** Requests per second over all connections (autocannon overallRate); 0 = as fast as the service answers. */
  rate: number
  validTokens: string[]
  revokedTokens: string[]
  serviceKey: string
  /** Called once when half the requests or half the time has gone. */
  onHalfway: () => void
  /** Whether a 503 now is expected (the Redis restart and its recovery). */
  in503Window: () => boolean
}

export interface TrafficCounts {
  answered: Record<Kind, number>
  /** valid:true for an unknown or revoked token, valid:false for a valid one, or a body that is not an answer. */
  wrong: Record<Kind, number>
  wrongExamples: string[]
  status503InWindow: number
  status503OutsideWindow: number
  /** The first few: when (s into the load) and what (the error code). */
  examples503Outside: string[]
  codes503Outside: Record<string, number>
  /** Any status other than 200 and 503. */
  otherStatus: Record<string, number>
  /** autocannon's own: connection errors and requests that got no answer in time. */
  errors: number
  timeouts: number
  sent: number
  durationS: number
  rps: number
  latencyP50: number
  latencyP99: number
}

const MIX: Array<[Kind, number]> = [['valid', 0.8], ['unknown', 0.08], ['revoked', 0.08], ['invalidate', 0.04]]

function pick(): Kind {
  let roll = Math.random()
  for (const [kind, share] of MIX) if ((roll -= share) < 0) return kind
  return 'valid'
}

const any = <T>(list: T[]) => list[Math.floor(Math.random() * list.length)]!
const zero = (): Record<Kind, number> => ({ valid: 0, unknown: 0, revoked: 0, invalidate: 0 })

export function runTraffic(options: TrafficOptions): Promise<TrafficCounts> {
  const counts: TrafficCounts = {
    answered: zero(), wrong: zero(), wrongExamples: [], status503InWindow: 0, status503OutsideWindow: 0, examples503Outside: [], codes503Outside: {},
    otherStatus: {}, errors: 0, timeouts: 0, sent: 0, durationS: 0, rps: 0, latencyP50: 0, latencyP99: 0,
  }
  let total = 0
  let halfwayDone = false
  const startedAt = Date.now()
  const json = { 'content-type': 'application/json' }
  const auth = { ...json, authorization: `Bearer ${options.serviceKey}` }

  function judge(kind: Kind, status: number, body: string): void {
    total++
    if (!halfwayDone && (total >= options.maxRequests / 2 || Date.now() - startedAt >= (options.durationS * 1000) / 2)) {
      halfwayDone = true
      options.onHalfway()
    }
    if (total >= options.maxRequests) instance.stop()
    if (status === 503) {
      if (options.in503Window()) counts.status503InWindow++
      else {
        counts.status503OutsideWindow++
        const code = /"code":"(\w+)"/.exec(body)?.[1] ?? 'no code'
        counts.codes503Outside[code] = (counts.codes503Outside[code] ?? 0) + 1
        if (counts.examples503Outside.length < 3) counts.examples503Outside.push(`${kind} at ${((Date.now() - startedAt) / 1000).toFixed(0)} s: ${code}`)
      }
      return
    }
    if (status !== 200) {
      counts.otherStatus[status] = (counts.otherStatus[status] ?? 0) + 1
      return
    }
    counts.answered[kind]++
    let answer: { valid?: unknown; reason?: unknown; invalidated?: unknown }
    try {
      answer = JSON.parse(body) as typeof answer
    } catch {
      answer = {}
    }
    const right =
      kind === 'valid' ? answer.valid === true
      : kind === 'unknown' ? answer.valid === false && answer.reason === 'not_found'
      : kind === 'revoked' ? answer.valid === false && answer.reason === 'revoked'
      : typeof answer.invalidated === 'number'
    if (!right) {
      counts.wrong[kind]++
      if (counts.wrongExamples.length < 5) counts.wrongExamples.push(`${kind}: ${body.slice(0, 200)}`)
    }
  }

  let finish: (err: Error | null, result: autocannon.Result) => void = () => undefined
  const done = new Promise<autocannon.Result>((resolve, reject) => (finish = (err, result) => (err ? reject(err) : resolve(result))))
  const instance = autocannon({
    url: options.url,
    connections: options.connections,
    pipelining: 1,
    duration: options.durationS,
    // A request not answered in this long counts as lost (a slow answer on a saturated machine is still an answer).
    timeout: 30,
    ...(options.rate > 0 ? { overallRate: options.rate } : {}),
    requests: [
      {
        setupRequest(request, context) {
          const ctx = context as { kind?: Kind }
          const kind = pick()
          ctx.kind = kind
          counts.sent++
          if (kind === 'invalidate') {
            return { ...request, method: 'POST', path: '/invalidate', headers: auth, body: JSON.stringify({ token: any(options.validTokens) }) }
          }
          const token = kind === 'valid' ? any(options.validTokens) : kind === 'revoked' ? any(options.revokedTokens) : `soak_unknown_${Math.random().toString(36).slice(2)}`
          return { ...request, method: 'POST', path: '/validate', headers: json, body: JSON.stringify({ token }) }
        },
        onResponse(status, body, context) {
          judge((context as { kind?: Kind }).kind ?? 'valid', status, body)
        },
      },
    ],
  }, (err, result) => finish(err, result))

  return done.then((result) => {
    counts.errors = result.errors
    counts.timeouts = result.timeouts
    counts.durationS = result.duration
    counts.rps = total / Math.max(result.duration, 1)
    counts.latencyP50 = result.latency.p50
    counts.latencyP99 = result.latency.p99
    return counts
  })
}
