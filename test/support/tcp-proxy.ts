import net from 'node:net'

export interface ProxyTarget {
  host: string
  port: number
}

type Mode = 'open' | 'refuse' | 'hang'

/**
 * Copies bytes from one socket to another after the proxy's current delay. Each chunk is due no earlier than the one
 * before it, so bytes keep their order even when the delay is lowered mid-stream.
 */
function relay(from: net.Socket, to: net.Socket, delayMs: () => number, mode: () => Mode, timers: Set<NodeJS.Timeout>) {
  let lastDue = 0
  const forward = (send: () => void) => {
    const delay = delayMs()
    const due = Math.max(Date.now() + delay, lastDue)
    lastDue = due
    if (delay === 0 && due <= Date.now()) return send()
    const timer = setTimeout(() => {
      timers.delete(timer)
      send()
    }, due - Date.now())
    timers.add(timer)
  }
  from.on('data', (chunk: Buffer) => {
    // A hanging proxy swallows everything: the peer sees a connection that never answers.
    if (mode() === 'hang') return
    forward(() => {
      if (!to.destroyed) to.write(chunk)
    })
  })
  from.on('end', () => forward(() => to.end()))
}

/**
 * A TCP proxy on a loopback port in front of a real server, to slow it (setDelay) or cut it (blackhole) from the
 * client's side without touching the server. Listens until close(); an outage is simulated per connection, so the
 * port never changes hands.
 */
export async function startTcpProxy(target: ProxyTarget) {
  let delayMs = 0
  let mode: Mode = 'open'
  const sockets = new Set<net.Socket>()
  const timers = new Set<NodeJS.Timeout>()

  const track = (socket: net.Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    // Errors are expected here (resets when cut); the paired socket is torn down on close.
    socket.on('error', () => undefined)
  }

  const server = net.createServer((client) => {
    track(client)
    if (mode === 'refuse') {
      client.resetAndDestroy()
      return
    }
    client.setNoDelay(true)
    const upstream = net.connect({ host: target.host, port: target.port })
    track(upstream)
    upstream.setNoDelay(true)
    relay(client, upstream, () => delayMs, () => mode, timers)
    relay(upstream, client, () => delayMs, () => mode, timers)
    client.once('close', () => upstream.destroy())
    upstream.once('close', () => client.destroy())
  })
  server.on('error', () => undefined)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as net.AddressInfo

  function dropAll() {
    for (const timer of timers) clearTimeout(timer)
    timers.clear()
    for (const socket of sockets) socket.resetAndDestroy()
    sockets.clear()
  }

  return {
    port,
    host: '127.0.0.1',
    /** The number of sockets (client and upstream sides) the proxy holds open. */
    get connections() {
      return sockets.size
    },
    /** Chunks held back by the delay, not yet forwarded (a query on its way to the server, or its answer back). */
    get pending() {
      return timers.size
    },
    /** Adds this much latency to every chunk, both directions, from now on (0 removes it). */
    setDelay(ms: number) {
      delayMs = ms
    },
    /**
     * Cuts the server off. 'refuse' (the default) resets every open connection and every new one at once, like a
     * server that went away; 'hang' accepts and keeps connections but never forwards a byte, like packets dropped.
     */
    blackhole(how: 'refuse' | 'hang' = 'refuse') {
      mode = how
      if (how === 'refuse') dropAll()
    },
    /**
     * Back to forwarding, with no delay. Connections that hung are reset (bytes were lost, so their protocol state is
     * gone); clients reconnect.
     */
    resume() {
      if (mode === 'hang') dropAll()
      mode = 'open'
      delayMs = 0
    },
    async close(): Promise<void> {
      dropAll()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

export type TcpProxy = Awaited<ReturnType<typeof startTcpProxy>>
