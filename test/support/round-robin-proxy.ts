import http from 'node:http'
import type net from 'node:net'
import { probe } from './server-process.js'

const UNHEALTHY_THRESHOLD = 3

/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy never forwards them. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

function endToEnd(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name)))
}

interface Upstream {
  name: string
  port: number
  ready: boolean
  /** Requests sent to it. */
  routed: number
  /** Readiness as polled, in order: the status, or the error code. */
  polls: Array<number | string>
}

/**
 * A small load balancer on a loopback port, modelled on what a platform's does: round-robin over the upstreams whose
 * readiness (GET /health/ready, polled every `pollIntervalMs`) last answered 200, over keep-alive connections. No
 * retries: a request that fails upstream (refused, reset) is answered 502 and recorded in `failures`, so a test sees
 * every request the service itself failed to answer.
 */
export async function startRoundRobinProxy(options: { pollIntervalMs: number }) {
  const upstreams: Upstream[] = []
  const agent = new http.Agent({ keepAlive: true })
  const failures: string[] = []
  let next = 0
  let stopped = false

  const server = http.createServer((req, res) => {
    const ready = upstreams.filter((u) => u.ready)
    if (ready.length === 0) {
      failures.push(`${req.method} ${req.url}: no ready upstream`)
      res.writeHead(502, { 'x-proxy-error': 'no-ready-upstream' }).end()
      return
    }
    const upstream = ready[next++ % ready.length]!
    upstream.routed++
    const forward = http.request(
      { host: '127.0.0.1', port: upstream.port, method: req.method, path: req.url, headers: endToEnd(req.headers), agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, { ...endToEnd(answer.headers), 'x-upstream': upstream.name })
        answer.pipe(res)
      },
    )
    forward.on('error', (err: NodeJS.ErrnoException) => {
      failures.push(`${req.method} ${req.url} → ${upstream.name}: ${err.code ?? err.message}`)
      if (!res.headersSent) res.writeHead(502, { 'x-proxy-error': err.code ?? 'error' }).end()
      else res.destroy()
    })
    req.pipe(forward)
  })

  /**
   * 200 makes an upstream ready; a 503 (it says it is draining or starting) or a refused connection (nothing listens)
   * takes it out at once; other probe failures (a timeout on a busy host) only after UNHEALTHY_THRESHOLD in a row,
   * as balancers' unhealthy thresholds do.
   */
  async function poll(upstream: Upstream): Promise<void> {
    let failures = 0
    while (!stopped && upstreams.includes(upstream)) {
      const status = await probe(upstream.port, '/health/ready', options.pollIntervalMs * 5)
      upstream.polls.push(status)
      if (status === 200) {
        failures = 0
        upstream.ready = true
      } else if (status === 503 || status === 'ECONNREFUSED' || ++failures >= UNHEALTHY_THRESHOLD) {
        upstream.ready = false
      }
      await new Promise((resolve) => setTimeout(resolve, options.pollIntervalMs).unref())
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    failures,
    upstream: (name: string) => upstreams.find((u) => u.name === name),
    /** Starts polling an upstream; it takes traffic once its readiness answers 200. */
    add(name: string, upstreamPort: number): void {
      const upstream: Upstream = { name, port: upstreamPort, ready: false, routed: 0, polls: [] }
      upstreams.push(upstream)
      void poll(upstream)
    },
    async close(): Promise<void> {
      stopped = true
      agent.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

export type RoundRobinProxy = Awaited<ReturnType<typeof startRoundRobinProxy>>
