import { spawn } from 'node:child_process'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../src/dev/free-port.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const READY_TIMEOUT_MS = 60_000
/** The service key every server process accepts unless the test sets SERVICE_API_KEYS itself. */
export const TEST_SERVICE_KEY = 'test-service-key-0123456789abcdef'

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** GET on a connection of its own (no keep-alive), bounded in time: the status, or the error code. */
export function probe(port: number, path: string, timeoutMs = 2000): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })))
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
}

/**
 * The real service (src/server.ts: config, signals, close-with-grace) as a child process on a free loopback port,
 * with its JSON log lines captured. Resolves once /health/ready answers 200.
 */
export async function startServerProcess(env: Record<string, string>) {
  const port = await freePort()
  const output: string[] = []
  const child = spawn(`${ROOT}node_modules/.bin/node`, ['--import', 'tsx', `${ROOT}src/server.ts`], {
    cwd: ROOT,
    env: {
      PATH: `${ROOT}node_modules/.bin:${process.env.PATH ?? ''}`,
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
      // Event-loop shedding is not what these tests are about; on a busy machine it would answer 503 OVERLOADED.
      LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
      // Production refuses to start without service keys; a test that is about keys passes its own.
      SERVICE_API_KEYS: `test:${TEST_SERVICE_KEY}`,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout.on('data', (c: Buffer) => output.push(c.toString()))
  child.stderr.on('data', (c: Buffer) => output.push(c.toString()))
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))

  const text = () => output.join('')
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (child.exitCode === null && Date.now() < deadline && (await probe(port, '/health/ready')) !== 200) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  if (child.exitCode !== null || Date.now() >= deadline) {
    child.kill('SIGKILL')
    throw new Error(`server did not become ready:\n${text().slice(-4000)}`)
  }

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    exited,
    text,
    /** Every JSON log line so far. */
    logs(): Array<Record<string, unknown>> {
      return text()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>
          } catch {
            return {}
          }
        })
    },
    signal(signal: NodeJS.Signals): number {
      child.kill(signal)
      return Date.now()
    },
    /** Waits for the exit at most `timeoutMs`; 'timeout' when it did not come. */
    exit(timeoutMs: number): Promise<Exit | 'timeout'> {
      let timer: NodeJS.Timeout | undefined
      return Promise.race([
        exited,
        new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
      ]).finally(() => clearTimeout(timer))
    },
    /** Cleanup: whatever happened, the child does not outlive the test file. */
    async kill(): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
      }
    },
  }
}

export type ServerProcess = Awaited<ReturnType<typeof startServerProcess>>
