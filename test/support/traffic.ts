/**
 * Continuous validation traffic from many concurrent keep-alive clients (Node's fetch, as the Studio calls), against
 * one or more listening instances, classifying every answer: a wrong answer is valid:true for a session revoked
 * longer than the bound before the request was sent, or valid:false for one never revoked; a 5xx is counted apart (with Postgres up, the
 * service must answer). Bounded by `maxMs` and by `stop()`.
 */
export interface TrafficSession {
  token: string
  /** When the test began to end it (valid:false is right from then on); undefined while it is valid. */
  endingFrom?: number
  /** When its revocation committed (or its /invalidate answered 200), ms since epoch; undefined while valid. */
  revokedAt?: number
}

export interface TrafficReport {
  requests: number
  wrong: Array<{ token: string; answer: unknown; sentAt: number }>
  serverErrors: Array<{ status: number; body: string }>
  slowestMs: number
  sources: Record<string, number>
  /** Answers from Redis after `since` (ms): hits came back. */
  redisAnswersAfter(since: number): number
}

export function startTraffic(options: {
  urls: string[]
  sessions: TrafficSession[]
  clients: number
  maxMs: number
  /** The revocation bound under test: an answer valid:true sent later than this after the revocation is wrong. */
  boundMs: number
}) {
  let stopped = false
  const deadline = Date.now() + options.maxMs
  const report = {
    requests: 0,
    wrong: [] as TrafficReport['wrong'],
    serverErrors: [] as TrafficReport['serverErrors'],
    slowestMs: 0,
    sources: {} as Record<string, number>,
  }
  const redisAnswers: number[] = []
  async function client(n: number): Promise<void> {
    for (let i = n; !stopped && Date.now() < deadline; i++) {
      const session = options.sessions[i % options.sessions.length]!
      const url = options.urls[i % options.urls.length]!
      const sentAt = Date.now()
      let status = 0
      let text = ''
      try {
        const res = await fetch(`${url}/validate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token: session.token }),
          signal: AbortSignal.timeout(10_000),
        })
        status = res.status
        text = await res.text()
      } catch (err) {
        report.serverErrors.push({ status: 0, body: (err as Error).message })
        continue
      }
      const took = Date.now() - sentAt
      report.requests++
      report.slowestMs = Math.max(report.slowestMs, took)
      if (status >= 500) {
        report.serverErrors.push({ status, body: text })
        continue
      }
      const answer = JSON.parse(text) as { valid: boolean; source?: string }
      const source = answer.source ?? 'not-valid'
      report.sources[source] = (report.sources[source] ?? 0) + 1
      if (source === 'redis') redisAnswers.push(Date.now())
      const revokedBefore = session.revokedAt !== undefined && session.revokedAt + options.boundMs < sentAt
      const neverRevoked = session.revokedAt === undefined && session.endingFrom === undefined
      if ((answer.valid && revokedBefore) || (!answer.valid && neverRevoked)) report.wrong.push({ token: session.token.slice(0, 8), answer, sentAt })
    }
  }
  const running = Promise.all(Array.from({ length: options.clients }, (_, n) => client(n)))
  return {
    /** Stops the clients and returns what they saw. */
    async stop(): Promise<TrafficReport> {
      stopped = true
      await running
      return { ...report, redisAnswersAfter: (since: number) => redisAnswers.filter((at) => at > since).length }
    },
  }
}
