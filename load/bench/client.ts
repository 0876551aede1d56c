/**
 * npm run bench:client: what packages/client costs on the hot path. The real service (src/server.ts, production
 * settings) on its Redis-hit path, called from this process three ways, interleaved over rounds (median reported):
 *   fetch    Node's global fetch, POST /validate, JSON parsed: the bare call a caller would write
 *   request  undici's request() on a keep-alive Pool configured as the client's: the client's transport alone
 *   client   createSessionClient().validate(): deadline, retry bookkeeping, typed result, trace headers
 * The generator and the service share the machine, so a heavier caller also takes CPU from the service: that is
 * part of what it costs; the caller's own CPU per request (this process) is the steadier measure on a shared machine.
 * Rounds are short and interleaved so that a noisy neighbour hits every mode alike. Options: --duration=<s per round and mode> --rounds=<n> --concurrency=<n> --sessions=<n>.
 */
import { spawn } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { createSessionClient } from '../../packages/client/src/index.js'
import { freePort } from '../../src/dev/free-port.js'
import { cliArgs } from './cli-args.js'
import { dropSchema, seedSchema } from './fixtures.js'
import { median } from './stats.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const args = cliArgs()
const DURATION_S = Number(args.get('duration') ?? 1)
const ROUNDS = Number(args.get('rounds') ?? 12)
const CONCURRENCY = Number(args.get('concurrency') ?? 32)
const SESSIONS = Number(args.get('sessions') ?? 200)
const DATABASE_URL = args.get('database-url') ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = args.get('redis-url') ?? 'redis://127.0.0.1:6379'
const SERVICE_KEY = `bench-${randomBytes(12).toString('hex')}`
const say = (line: string) => process.stdout.write(`${line}\n`)

async function startService(schema: string, prefix: string) {
  const port = await freePort()
  const child = spawn(path.join(root, 'node_modules/.bin/node'), ['--import', 'tsx', path.join(root, 'src/server.ts')], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      DATABASE_URL,
      DATABASE_SCHEMA: schema,
      REDIS_URL,
      REDIS_KEY_PREFIX: prefix,
      CACHE_ENCRYPTION_KEYS: `bench:${randomBytes(32).toString('base64')}`,
      SERVICE_API_KEYS: `bench:${SERVICE_KEY}`,
      LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
      SHUTDOWN_DRAIN_DELAY_MS: '0',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(`${url}/health/ready`).then((r) => r.ok, () => false)
    if (ok) return { url, child }
    await new Promise((r) => setTimeout(r, 100))
  }
  child.kill('SIGKILL')
  throw new Error('service did not become ready')
}

type Call = (token: string) => Promise<boolean>

/** CONCURRENCY loops for DURATION_S; every answer must be valid:true (a hit), or the run is void. */
async function drive(call: Call, tokens: string[]) {
  const latencies: number[] = []
  let failures = 0
  const cpu0 = process.cpuUsage()
  const stopAt = performance.now() + DURATION_S * 1000
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, c) => {
      for (let i = c; performance.now() < stopAt; i += CONCURRENCY) {
        const t0 = performance.now()
        const ok = await call(tokens[i % tokens.length]!).catch(() => false)
        latencies.push(performance.now() - t0)
        if (!ok) failures++
      }
    }),
  )
  const cpu = process.cpuUsage(cpu0)
  latencies.sort((a, b) => a - b)
  return { rps: latencies.length / DURATION_S, p99: latencies[Math.floor(latencies.length * 0.99)]!, failures, cpuUs: (cpu.user + cpu.system) / latencies.length }
}

async function main() {
  const schema = `bench_client_${randomBytes(4).toString('hex')}`
  const prefix = `bench-client-${randomBytes(4).toString('hex')}:`
  const tokens = (await seedSchema(DATABASE_URL, schema, SESSIONS, { tokenPrefix: 'bench' })).map((s) => s.token)
  const service = await startService(schema, prefix)
  const pool = new Pool(service.url, { connections: CONCURRENCY, pipelining: 1 })
  const client = createSessionClient({ baseUrl: service.url, serviceKey: SERVICE_KEY, connections: CONCURRENCY })
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${SERVICE_KEY}` }
  const modes: Record<string, Call> = {
    fetch: async (token) => {
      const res = await fetch(`${service.url}/validate`, { method: 'POST', headers, body: JSON.stringify({ token }) })
      return ((await res.json()) as { valid: boolean; source: string }).source === 'redis'
    },
    request: async (token) => {
      const res = await pool.request({ path: '/validate', method: 'POST', headers: { ...headers, 'x-request-id': randomUUID() }, body: JSON.stringify({ token }) })
      return (JSON.parse(await res.body.text()) as { source: string }).source === 'redis'
    },
    client: async (token) => {
      const answer = await client.validate(token)
      return answer.valid && answer.source === 'redis'
    },
  }
  try {
    // Warm: every session cached in Redis (fills are in the background), and every transport's connections open.
    for (const token of tokens) await client.validate(token)
    await new Promise((r) => setTimeout(r, 500))
    for (const call of Object.values(modes)) await Promise.all(tokens.slice(0, CONCURRENCY).map(call))
    const results: Record<string, Array<{ rps: number; p99: number; failures: number; cpuUs: number }>> = { fetch: [], request: [], client: [] }
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, call] of Object.entries(modes)) {
        const r = await drive(call, tokens)
        results[name]!.push(r)
        say(`round ${round + 1} ${name}: ${Math.round(r.rps)} req/s, p99 ${r.p99.toFixed(2)} ms, caller CPU ${r.cpuUs.toFixed(1)} µs/req, ${r.failures} not a Redis hit`)
      }
    }
    const summary = Object.fromEntries(
      Object.entries(results).map(([name, rs]) => [name, { rps: median(rs.map((r) => r.rps)), p99: median(rs.map((r) => r.p99)), cpuUs: median(rs.map((r) => r.cpuUs)), failures: rs.reduce((a, r) => a + r.failures, 0) }]),
    )
    say('')
    say(`| caller → service → Redis hit (${CONCURRENCY} concurrent, ${ROUNDS}×${DURATION_S} s, median) | req/s | p99 ms | caller CPU µs/req | req/s vs fetch | p99 vs fetch | req/s vs request |`)
    say('|---|---|---|---|---|---|---|')
    for (const [name, s] of Object.entries(summary)) {
      say(
        `| ${name} | ${Math.round(s.rps)} | ${s.p99.toFixed(2)} | ${s.cpuUs.toFixed(1)} | ${(s.rps / summary.fetch!.rps).toFixed(2)} | ` +
          `${(s.p99 / summary.fetch!.p99).toFixed(2)} | ${(s.rps / summary.request!.rps).toFixed(2)} |`,
      )
    }
    const failures = Object.values(summary).reduce((a, s) => a + s.failures, 0)
    if (failures > 0) say(`WARNING: ${failures} answers were not Redis hits (or failed): the rows are not the hit path`)
  } finally {
    await client.close()
    await pool.close()
    service.child.kill('SIGTERM')
    await new Promise((r) => service.child.once('exit', r))
    await dropSchema(DATABASE_URL, schema)
  }
}

await main()
