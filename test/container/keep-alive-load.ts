import http from 'node:http'

/**
 * Keep-alive clients that validate in a loop until the server goes away, as real callers (Node's fetch) do, and
 * account for every request: answered (any status), refused (ECONNREFUSED: the listener was closed before the
 * connection was made, so the server never accepted it and nothing was lost), or lost (accepted, then reset or
 * timed out without an answer). Bounded in requests and time.
 */
export interface LoadTally {
  sent: number
  answered: Record<number, number>
  refused: number
  lost: string[]
  wrong: number
  /** Clients that stopped because readiness said 503 (the load balancer took the instance out). */
  stoppedOnReadiness: number
}

export function keepAliveLoad(options: {
  port: number
  clients: number
  token: string
  maxRequests: number
  deadlineMs: number
  /**
   * Behave as a load balancer in front of the instance does: poll /health/ready every this many ms and send no new
   * request once it answers 503 (or refuses). Requests already sent still finish. SHUTDOWN_DRAIN_DELAY_MS is there for
   * exactly this: without it a caller keeps opening connections until the listener is gone, and one the kernel had
   * already accepted when it closed is reset.
   */
  readinessPollMs?: number
}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.clients })
  const tally: LoadTally = { sent: 0, answered: {}, refused: 0, lost: [], wrong: 0, stoppedOnReadiness: 0 }
  let routed = true
  const poll = options.readinessPollMs
    ? setInterval(() => {
        const req = http.get({ host: '127.0.0.1', port: options.port, path: '/health/ready', agent: false }, (res) => {
          res.resume()
          if (res.statusCode !== 200) routed = false
        })
        req.setTimeout(options.readinessPollMs!, () => req.destroy())
        req.on('error', () => (routed = false))
      }, options.readinessPollMs)
    : undefined
  const body = JSON.stringify({ token: options.token })
  const stopAt = Date.now() + options.deadlineMs

  function once(): Promise<'again' | 'stop'> {
    return new Promise((resolve) => {
      if (!routed) {
        tally.stoppedOnReadiness++
        resolve('stop')
        return
      }
      tally.sent++
      const req = http.request(
        { host: '127.0.0.1', port: options.port, method: 'POST', path: '/validate', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => (text += c))
          res.on('end', () => {
            const status = res.statusCode ?? 0
            tally.answered[status] = (tally.answered[status] ?? 0) + 1
            if (status === 200 && !text.includes('"valid":true')) tally.wrong++
            resolve('again')
          })
          res.on('error', (err) => (tally.lost.push(`response: ${err.message}`), resolve('again')))
        },
      )
      req.setTimeout(15_000, () => req.destroy(new Error('no answer in 15 s')))
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') {
          tally.refused++
          resolve('stop')
        } else {
          tally.lost.push(err.code ?? err.message)
          resolve('again')
        }
      })
      req.end(body)
    })
  }

  const perClient = Math.ceil(options.maxRequests / options.clients)
  const done = Promise.all(
    Array.from({ length: options.clients }, async () => {
      for (let i = 0; i < perClient && Date.now() < stopAt; i++) if ((await once()) === 'stop') return
    }),
  ).then(() => {
    clearInterval(poll)
    agent.destroy()
    return tally
  })
  return { tally, done }
}
