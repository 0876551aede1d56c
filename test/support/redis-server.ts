import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import net from 'node:net'
import tls from 'node:tls'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { REDIS_SERVER_BIN } from './env.js'

export interface RedisServerOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory-policy', 'noeviction']. */
  args?: string[]
  /** Longest wait for the server to answer PING after a (re)start. */
  startTimeoutMs?: number
  /** Credentials the readiness check logs in with (a server started with an ACL that requires them). */
  auth?: { username: string; password: string }
  /** TLS only: the server listens with --tls-port (and no plaintext port) using these PEM files. */
  tls?: {
    certFile: string
    keyFile: string
    caFile: string
    /** tls-auth-clients: whether clients must present a certificate signed by caFile (default 'no'). */
    authClients?: 'yes' | 'no' | 'optional'
    /** What the readiness check presents and trusts (PEM text). */
    client: { ca: string; cert?: string; key?: string }
  }
}

interface ProbeOptions {
  auth?: RedisServerOptions['auth']
  tls?: { ca: string; cert?: string; key?: string }
}

/** Lowest port the kernel hands out for outgoing connections (Linux), or the IANA default. */
export async function ephemeralLow(): Promise<number> {
  try {
    const range = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
    const low = Number(range.trim().split(/\s+/)[0])
    return Number.isInteger(low) && low > 2000 ? low : 32768
  } catch {
    return 49152
  }
}

export function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * A free loopback port *below* the ephemeral range. A server that will be killed and restarted must not sit on an
 * ephemeral port: while it is down, a client reconnecting to it can be given that same port as its own source port
 * (a TCP self-connect), which then holds the port and the restart fails.
 */
export async function freePort(): Promise<number> {
  const high = (await ephemeralLow()) - 1
  const low = Math.min(10_000, high - 1000)
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low))
    if (await canListen(port)) return port
  }
  throw new Error(`no free loopback port found in ${low}-${high}`)
}

/**
 * True when the redis-server answering on `port` is process `pid`: INFO server over a raw socket, bounded by its own
 * timeout. Checking the pid (not just PING) means a server that lost the port to another process is never mistaken
 * for ready.
 */
function answersAs(port: number, pid: number, probe: ProbeOptions = {}, timeoutMs = probe.tls ? 1000 : 250): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = probe.tls
      ? tls.connect({ host: '127.0.0.1', port, ...probe.tls })
      : net.connect({ host: '127.0.0.1', port })
    const hello = probe.auth ? `AUTH ${probe.auth.username} ${probe.auth.password}\r\nINFO server\r\n` : 'INFO server\r\n'
    let reply = ''
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('error', () => done(false))
    socket.once(probe.tls ? 'secureConnect' : 'connect', () => socket.write(hello))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.startsWith('-')) return done(false)
      const found = /process_id:(\d+)\r\n/.exec(reply)
      if (found) done(Number(found[1]) === pid)
    })
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A private redis-server on a free loopback port, with no persistence, for tests that kill and restart Redis
 * without touching the shared one. The process is SIGKILLed on stop() (an outage, not a shutdown) and on exit of
 * the test process, so a failing test never leaves one behind.
 */
export async function startRedisServer(options: RedisServerOptions = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'ssc-redis-'))
  const startTimeoutMs = options.startTimeoutMs ?? 5000
  let port = 0
  let child: ChildProcess | undefined
  let output = ''
  const killOnExit = () => child?.kill('SIGKILL')
  process.once('exit', killOnExit)

  async function launch(): Promise<void> {
    const listen = options.tls
      ? [
          '--port', '0', '--tls-port', String(port),
          '--tls-cert-file', options.tls.certFile, '--tls-key-file', options.tls.keyFile,
          '--tls-ca-cert-file', options.tls.caFile, '--tls-auth-clients', options.tls.authClients ?? 'no',
        ]
      : ['--port', String(port)]
    const args = [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...(options.args ?? [])]
    const proc = spawn(REDIS_SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    let exited = false
    proc.once('exit', () => (exited = true))
    const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000))
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', keep)
    proc.once('error', (err) => (output += `\nspawn error: ${err.message}`))
    const deadline = Date.now() + startTimeoutMs
    while (Date.now() < deadline && !exited) {
      if (proc.pid !== undefined && (await answersAs(port, proc.pid, { auth: options.auth, tls: options.tls?.client }))) return
      await sleep(25)
    }
    proc.kill('SIGKILL')
    child = undefined
    throw new Error(`redis-server on port ${port} did not answer within ${startTimeoutMs} ms:\n${output}`)
  }

  /** SIGKILL, then wait (bounded) until the process has exited and its port is closed. */
  async function stop(): Promise<void> {
    const proc = child
    child = undefined
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    proc.kill('SIGKILL')
    await Promise.race([exited, sleep(5000)])
    if (proc.exitCode === null && proc.signalCode === null) throw new Error(`redis-server on port ${port} did not exit`)
  }

  // The port is free when picked but not reserved: if something takes it first, start again on another.
  for (let attempt = 1; ; attempt++) {
    port = await freePort()
    try {
      await launch()
      break
    } catch (err) {
      if (attempt >= 3) {
        process.off('exit', killOnExit)
        await rm(dir, { recursive: true, force: true })
        throw err
      }
    }
  }

  return {
    port,
    url: `${options.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    /** Started and not stopped (nor dead by itself). */
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
    stop,
    /** Starts again on the same port (stopping first if needed), empty: nothing was persisted. */
    async restart(): Promise<void> {
      await stop()
      await launch()
    },
    async close(): Promise<void> {
      await stop()
      process.off('exit', killOnExit)
      await rm(dir, { recursive: true, force: true })
    },
  }
}

export type RedisServer = Awaited<ReturnType<typeof startRedisServer>>
