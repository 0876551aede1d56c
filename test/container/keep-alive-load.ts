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
}

export function keepAliveLoad(options: { port: number; clients: number; token: string; maxRequests: number; deadlineMs: number }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.clients })
  const tally: LoadTally = { sent: 0, answered: {}, refused: 0, lost: [], wrong: 0 }
  const body = JSON.stringify({ token: options.token })
  const stopAt = Date.now() + options.deadlineMs

  function once(): Promise<'again' | 'stop'> {
    return new Promise((resolve) => {
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
    agent.destroy()
    return tally
  })
  return { tally, done }
}
