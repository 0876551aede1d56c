import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { Redis } from 'ioredis'
import { canListen, ephemeralLow } from './redis-server.js'

/**
 * What the Sentinel and Cluster harnesses share: redis-server processes on fixed loopback ports that can be killed,
 * paused and started again on the same port, one-shot commands bounded by a timeout, and bounded waits.
 */

/** Credentials for data nodes started with an ACL or requirepass (in `args`). */
export interface RedisAuth {
  username?: string
  password: string
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * `count` distinct free loopback ports below the ephemeral range (see freePort in redis-server.ts: nodes here are
 * killed and restarted). With `busOffset` (Redis Cluster: the bus listens on port + 10000), port + busOffset is free
 * and below the ephemeral range as well, so a node's bus port cannot be taken by an outgoing connection either.
 */
export async function freePorts(count: number, options: { busOffset?: number } = {}): Promise<number[]> {
  const offset = options.busOffset ?? 0
  const high = (await ephemeralLow()) - 1 - offset
  const low = Math.min(10_000, high - 1000)
  if (low < 1024) throw new Error(`no room for ports with a +${offset} bus port below the ephemeral range`)
  const picked = new Set<number>()
  for (let attempt = 0; picked.size < count && attempt < 50 * count; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low))
    const taken = [...picked].some((p) => p === port || p + offset === port || p === port + offset)
    if (taken) continue
    if (!(await canListen(port))) continue
    if (offset > 0 && !(await canListen(port + offset))) continue
    picked.add(port)
  }
  if (picked.size < count) throw new Error(`found only ${picked.size} of ${count} free loopback ports in ${low}-${high}`)
  return [...picked]
}

/**
 * One command on a fresh connection to 127.0.0.1:port, bounded by `timeoutMs` (connect and reply; a paused process
 * accepts the connection but never answers). Rejects with the server's error, or a timeout.
 */
export async function redisCommand(
  port: number,
  args: (string | number)[],
  options: { auth?: RedisAuth; timeoutMs?: number } = {},
): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? 1000
  const client = new Redis({
    host: '127.0.0.1',
    port,
    username: options.auth?.username,
    password: options.auth?.password,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableReadyCheck: false,
    enableOfflineQueue: false,
  })
  client.on('error', () => {})
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`127.0.0.1:${port} ${args[0]}: no reply within ${timeoutMs} ms`)), timeoutMs + 100)
  })
  try {
    const [name, ...rest] = args.map(String)
    return await Promise.race([client.connect().then(() => client.call(name ?? 'PING', ...rest)), deadline])
  } finally {
    clearTimeout(timer)
    client.disconnect()
  }
}

/** INFO text as key → value (sections flattened). */
export function parseInfo(text: unknown): Record<string, string> {
  const fields: Record<string, string> = {}
  for (const line of String(text).split('\r\n')) {
    const at = line.indexOf(':')
    if (at > 0 && !line.startsWith('#')) fields[line.slice(0, at)] = line.slice(at + 1)
  }
  return fields
}

/**
 * Polls `check` until it returns a value, at most `timeoutMs`. `check` throws (or returns undefined) while the
 * condition does not hold; the last reason is in the timeout's message.
 */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const started = Date.now()
  let reason = 'not yet'
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      reason = err instanceof Error ? err.message : String(err)
    }
    if (Date.now() - started >= timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${reason})`)
    await sleep(intervalMs)
  }
}

/**
 * Kills a topology's processes and removes its temp dir whatever way the test process ends. On a normal exit the
 * topology's 'exit' handler calls killNow(); a test process killed by a signal (vitest interrupted, a worker killed)
 * runs no handler, so a detached watchdog shell polls the test process and, once it is gone, SIGKILLs the pids
 * written in <root>/pids (the processes started and not yet exited) and removes <root>.
 */
export class Reaper {
  private readonly pids = new Set<number>()
  private readonly file: string
  private readonly watchdog: ChildProcess

  constructor(private readonly root: string) {
    this.file = path.join(root, 'pids')
    writeFileSync(this.file, '')
    const script = 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; [ -s "$2/pids" ] && kill -9 $(cat "$2/pids") 2>/dev/null; rm -rf "$2"'
    this.watchdog = spawn('sh', ['-c', script, 'ssc-reaper', String(process.pid), root], { detached: true, stdio: 'ignore' })
    this.watchdog.unref()
  }

  /** Tracks a child until it exits. */
  add(child: ChildProcess): void {
    const pid = child.pid
    if (pid === undefined) return
    this.pids.add(pid)
    this.write()
    child.once('exit', () => {
      this.pids.delete(pid)
      this.write()
    })
  }

  private write(): void {
    try {
      writeFileSync(this.file, [...this.pids].join(' '))
    } catch {
      // The dir is gone (closed): nothing left to reap.
    }
  }

  /** Synchronous, for a process 'exit' handler: SIGKILL every tracked child, remove the dir, stop the watchdog. */
  killNow(): void {
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
    this.stop()
    rmSync(this.root, { recursive: true, force: true })
  }

  /** After an orderly close. */
  stop(): void {
    this.watchdog.kill('SIGKILL')
  }
}

/** A start that failed because the process exited (e.g. its port was taken since it was picked): worth a retry. */
export class RedisExitedError extends Error {}

/** One redis-server process (data node, cluster node or sentinel) on a fixed port; start() again after kill(). */
export class RedisProcess {
  private child: ChildProcess | undefined
  private stopped = false
  private log = ''

  constructor(
    readonly label: string,
    readonly port: number,
    private readonly command: () => { bin: string; args: string[] },
    private readonly options: { auth?: RedisAuth; startTimeoutMs: number; reaper: Reaper },
  ) {}

  /** Started, neither killed nor exited by itself (may be paused). */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** Running and not paused: expected to answer. */
  get live(): boolean {
    return this.running && !this.stopped
  }

  get paused(): boolean {
    return this.running && this.stopped
  }

  /** The last few KB of its stdout and stderr. */
  get output(): string {
    return this.log
  }

  /** Spawns it and waits (bounded) until the process answers INFO on its port with its own pid. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.label} on ${this.port} is already running`)
    const { bin, args } = this.command()
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    this.options.reaper.add(proc)
    this.child = proc
    this.stopped = false
    let exited = false
    proc.once('exit', () => (exited = true))
    const keep = (chunk: Buffer) => (this.log = (this.log + chunk.toString()).slice(-4000))
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', keep)
    proc.once('error', (err) => (this.log += `\nspawn error: ${err.message}`))
    const deadline = Date.now() + this.options.startTimeoutMs
    while (Date.now() < deadline && !exited) {
      if (proc.pid !== undefined && (await this.answersAs(proc.pid))) return
      await sleep(50)
    }
    proc.kill('SIGKILL')
    this.child = undefined
    const message = `${this.label} on 127.0.0.1:${this.port} did not answer within ${this.options.startTimeoutMs} ms:\n${this.log}`
    throw exited ? new RedisExitedError(message) : new Error(message)
  }

  private async answersAs(pid: number): Promise<boolean> {
    try {
      const info = parseInfo(await redisCommand(this.port, ['INFO', 'server'], { auth: this.options.auth, timeoutMs: 500 }))
      return Number(info.process_id) === pid
    } catch {
      return false
    }
  }

  /** SIGKILL (also when paused), then waits (bounded) for the exit. */
  async kill(): Promise<void> {
    const proc = this.child
    this.child = undefined
    this.stopped = false
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    proc.kill('SIGKILL')
    await Promise.race([exited, sleep(5000)])
    if (proc.exitCode === null && proc.signalCode === null) throw new Error(`${this.label} on ${this.port} did not exit`)
  }

  /** SIGSTOP: the port still accepts connections, nothing answers. */
  pause(): void {
    if (!this.running) throw new Error(`${this.label} on ${this.port} is not running`)
    this.child?.kill('SIGSTOP')
    this.stopped = true
  }

  /** SIGCONT after pause(). */
  resume(): void {
    if (!this.running) throw new Error(`${this.label} on ${this.port} is not running`)
    this.child?.kill('SIGCONT')
    this.stopped = false
  }
}

/** Runs a command line tool (redis-cli) to completion, SIGKILLed after `timeoutMs`; rejects on a non-zero exit. */
export function runTool(bin: string, args: string[], timeoutMs: number, track: Set<ChildProcess>, reaper: Reaper): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    track.add(proc)
    reaper.add(proc)
    let output = ''
    const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000))
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', keep)
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
    proc.once('error', (err) => {
      clearTimeout(timer)
      track.delete(proc)
      reject(new Error(`${bin}: ${err.message}`))
    })
    proc.once('close', (code, signal) => {
      clearTimeout(timer)
      track.delete(proc)
      if (code === 0) resolve(output)
      else {
        const why = signal === 'SIGKILL' ? `killed after ${timeoutMs} ms` : `exit ${code ?? signal}`
        reject(new Error(`${bin} ${args.join(' ')}: ${why}\n${output.slice(-4000)}`))
      }
    })
  })
}

/** ['--masteruser', u, '--masterauth', p]: what a replica logs in to its master with. */
export function replicaAuthArgs(auth: RedisAuth | undefined): string[] {
  if (!auth) return []
  return [...(auth.username ? ['--masteruser', auth.username] : []), '--masterauth', auth.password]
}
