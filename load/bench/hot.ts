/**
 * npm run bench:hot — the hit path's cost model: each stage of a validation timed in isolation (tinybench), then the
 * stages together, in one process on the real Redis (REDIS_URL) and a seeded Postgres schema, so that a change shows
 * what it saved per stage. Prints µs per operation and writes the "Hot path cost model" section of BENCHMARKS.md
 * (--write=false to only print).
 *
 * Sync stages run BATCH operations per sample; async stages launch CONCURRENCY operations at once per sample (as
 * concurrent requests do), and also report the process's CPU per operation (process.cpuUsage over the task), since
 * their wall time includes waiting on Redis. HTTP stages go through Fastify's inject (light-my-request): its own cost
 * is in every row, so only the differences between those rows mean anything.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import fastJson from 'fast-json-stringify'
import CircuitBreaker from 'opossum'
import { Redis } from 'ioredis'
import pino from 'pino'
import { Bench } from 'tinybench'
import { buildApp, type App } from '../../src/app.js'
import { createCacheCipher } from '../../src/cache/cipher.js'
import { createAnswerCodec } from '../../src/cache/codec.js'
import type { CacheOp, GuardedRunner } from '../../src/cache/redis-session-cache.js'
import { loadConfig, type Config } from '../../src/config.js'
import type { SessionAnswer } from '../../src/domain/session.js'
import { createTurnBarrier } from '../../src/http/turn-barrier.js'
import { hashToken } from '../../src/domain/token.js'
import { stillValid } from '../../src/domain/verdict.js'
import { ValidateResponse } from '../../src/http/schemas.js'
import type { RedisClient } from '../../src/redis/client.js'
import { createTurnLease } from '../../src/redis/pool.js'
import { bareApp } from './bare-route.js'
import { cliArgs, HOT_SECTION } from './cli-args.js'
import { dropSchema, seedSchema, type SeededSession } from './fixtures.js'
import { median } from './stats.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const args = cliArgs()
const TIME_MS = Number(args.get('time') ?? 400)
const WRITE = args.get('write') !== 'false'
const DATABASE_URL = args.get('database-url') ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = args.get('redis-url') ?? 'redis://127.0.0.1:6379'
/** --only=<text>: only the stages whose name contains it (e.g. --only=inject). */
const ONLY = args.get('only')
/** Interleaved rounds; each stage reports its median round (the machine is shared and noisy). */
const ROUNDS = Number(args.get('rounds') ?? 3)
const BATCH = 200
const CONCURRENCY = 64
const { start: START, end: END } = HOT_SECTION

interface Row {
  group: string
  name: string
  /** Median wall time per operation, µs. */
  us: number
  /** Process CPU per operation, µs (async stages only). */
  cpuUs?: number
  note?: string
}

const say = (line: string) => process.stdout.write(`${line}\n`)

function configFor(schema: string, prefix: string, key: string, extra: Record<string, string>): Config {
  return loadConfig(
    {
      NODE_ENV: 'production',
      DATABASE_URL,
      DATABASE_SCHEMA: schema,
      REDIS_URL,
      REDIS_KEY_PREFIX: prefix,
      LOG_LEVEL: 'info',
      CACHE_ENCRYPTION_KEYS: key,
      // Production refuses to start without one; /validate (all this measures) does not ask for it.
      SERVICE_API_KEYS: 'bench:bench-service-key-0123456789',
      ...extra,
    },
    { source: {} },
  )
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench:hot: ${what} did not happen within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function main() {
  const schema = `ssc_hot_${randomBytes(4).toString('hex')}`
  const prefix = `ssc-hot-${randomBytes(4).toString('hex')}:`
  const key = `hot:${randomBytes(32).toString('base64')}`
  const [{ token }] = (await seedSchema(DATABASE_URL, schema, 1, { tokenPrefix: 'hot' })) as [SeededSession]
  const hash = hashToken(token)
  const quiet = pino.destination('/dev/null')
  const apps: App[] = []
  const build = async (extra: Record<string, string>) => {
    const app = await buildApp(configFor(schema, prefix, key, extra), { logStream: quiet })
    apps.push(app)
    await app.ready()
    return app
  }
  const bare = bareApp(128)
  try {
    const service = await build({})
    const withL1 = await build({ L1_CACHE_TTL_MS: '60000' })
    await bare.ready()
    const payload = JSON.stringify({ token })
    const post = (app: { inject: App['inject'] }) =>
      app.inject({ method: 'POST', url: '/validate', headers: { 'content-type': 'application/json' }, payload })

    // Fill Redis (and the L1 tier, once it is subscribed), and check each path answers what it is meant to.
    if ((await post(service)).json<{ valid: boolean }>().valid !== true) throw new Error('bench:hot: the seeded session is not valid')
    await service.internals.writes.settle()
    await until('the L1 tier to resume', () => withL1.internals.local?.active === true)
    await post(withL1)
    await until('an L1 answer', () => withL1.internals.validator.validateLocally(hash)?.source === 'l1')
    const fromRedis = await service.internals.validator.validate(hash)
    if (fromRedis.source !== 'redis' || !fromRedis.valid) throw new Error(`bench:hot: expected a Redis hit, got ${fromRedis.source}`)

    const { internals } = service
    const keys = internals.keys
    const entryKey = keys.entry(hash)
    const cipher = createCacheCipher(internals.config.cache.encryptionKeys)
    const memoCodec = createAnswerCodec(cipher, { memoEntries: 1000 })
    const plainCodec = createAnswerCodec(cipher)
    const client: RedisClient = await internals.redisPool.acquire()
    void internals.redisPool.release(client)
    const raw = (await client.getBuffer(entryKey))!
    const answer = plainCodec.decode(hash, raw) as SessionAnswer & { valid: true }
    memoCodec.decode(hash, raw)
    const serialise = fastJson(ValidateResponse as object)
    const response = { valid: true, session: answer.entry.session, user: answer.entry.user, source: 'redis' }
    const lease = createTurnLease(internals.redisPool)
    const breaker = internals.breaker as unknown as GuardedRunner
    const noop: CacheOp = async () => null
    const doNothing = () => undefined
    // The same connection options as the pool's, but with ioredis's own timer per command (what the pool had before).
    const timedClient = new Redis(REDIS_URL, { enableAutoPipelining: true, maxRetriesPerRequest: 0, commandTimeout: internals.config.redis.commandTimeoutMs })
    const untimedBreaker = new CircuitBreaker(async (x: unknown) => x, { timeout: false, rollingPercentilesEnabled: false })
    // Redis down: a bare opossum breaker held open, and the service's own runner (a third app) held open.
    const openBreaker = new CircuitBreaker(async (x: unknown) => x, { timeout: 100, rollingPercentilesEnabled: false })
    openBreaker.open()
    const down = await build({})
    const downBreaker = down.internals.breaker as unknown as GuardedRunner
    down.internals.breaker.open()
    const getOp = ((c: RedisClient, k: string) => c.getBuffer(k)) as unknown as CacheOp
    const bareBreaker = new CircuitBreaker(async (x: unknown) => x, {
      timeout: internals.config.breaker.timeoutMs,
      rollingPercentilesEnabled: false,
    })
    const observer = internals.metrics.observer
    const local = withL1.internals.local!
    const kept = local.get(hash)!

    const rows: Row[] = []
    const bench = new Bench({ time: TIME_MS, warmupTime: Math.min(200, TIME_MS / 2) })
    const perOp = new Map<string, { ops: number; group: string; note?: string; cpuUs?: number; rounds: { us: number; cpuUs?: number }[] }>()
    const skip = (name: string) => ONLY !== undefined && !name.includes(ONLY)
    const sync = (group: string, name: string, fn: () => unknown, note?: string) => {
      if (skip(name)) return
      perOp.set(name, { ops: BATCH, group, note, rounds: [] })
      bench.add(name, () => {
        for (let i = 0; i < BATCH; i++) fn()
      })
    }
    const concurrent = (group: string, name: string, fn: () => Promise<unknown>, note?: string) => {
      if (skip(name)) return
      const entry: { ops: number; group: string; note?: string; cpuUs?: number; rounds: { us: number; cpuUs?: number }[] } = {
        ops: CONCURRENCY,
        group,
        note,
        rounds: [],
      }
      perOp.set(name, entry)
      let cpu: NodeJS.CpuUsage | undefined
      let calls = 0
      bench.add(
        name,
        async () => {
          calls += CONCURRENCY
          const all = new Array<Promise<unknown>>(CONCURRENCY)
          for (let i = 0; i < CONCURRENCY; i++) all[i] = fn()
          await Promise.all(all)
        },
        {
          beforeAll(mode) {
            if (mode !== 'run') return
            cpu = process.cpuUsage()
            calls = 0
          },
          afterAll(mode) {
            if (mode !== 'run' || !cpu || calls === 0) return
            const used = process.cpuUsage(cpu)
            entry.cpuUs = (used.user + used.system) / calls
          },
        },
      )
    }

    // --- stages, in the order a hit meets them
    sync('stage', 'hash: SHA-256 of the token (hex)', () => hashToken(token))
    sync('stage', 'key: entry key from the hash', () => keys.entry(hash))
    sync('stage', 'L1: lookup (lru-cache, TTL checked)', () => local.get(hash))
    sync('stage', 'verdict: expiry check', () => stillValid(kept, Date.now()))
    sync('stage', 'codec: decode, remembered value', () => memoCodec.decode(hash, raw), 'a hit on a value this process sealed or opened')
    sync('stage', 'codec: decode, full open (AES-256-GCM)', () => plainCodec.decode(hash, raw), 'the first hit on a value')
    sync('stage', 'codec: encode (fill, off the hit path)', () => plainCodec.encode(hash, answer))
    sync('stage', 'metrics: lookup + validation observed', () => {
      observer.cacheLookup('hit', hash)
      observer.validated('redis', 'valid', 0.0001)
    })
    sync('stage', 'serialise: response via the route schema', () => serialise(response))
    sync('stage', 'serialise: JSON.stringify (comparison)', () => JSON.stringify(response))
    sync('stage', 'timer: performance.now() pair', () => performance.now() - performance.now())
    sync('stage', 'timer: setTimeout + clearTimeout', () => clearTimeout(setTimeout(doNothing, 1000)), 'what a per-call timeout timer costs')
    sync('stage', 'request id: randomUUID()', () => randomUUID())
    concurrent('stage', 'promise: async call + await (floor)', async () => null)
    const endOfTurn = createTurnBarrier()
    concurrent('stage', 'turn barrier: L1 answers wait for the turn\'s end', () => endOfTurn(), 'one setImmediate shared by the turn\'s answers')
    concurrent('stage', 'lease: borrow per event-loop turn', () => lease.run(noop as never))
    concurrent('stage', 'opossum: fire, no-op action', () => bareBreaker.fire(null), 'a bare breaker, same timeout')
    concurrent('stage', 'breaker + lease + timer: no-op command', () => breaker.fire(noop), 'the guarded runner around nothing')
    concurrent('stage', 'opossum: fire, no-op action, no timeout', () => untimedBreaker.fire(null), 'a bare breaker without its per-call timer')
    concurrent('stage', 'breaker open: opossum refuses', () => openBreaker.fire(null).catch(doNothing), 'a new Error per call')
    concurrent('stage', 'breaker open: the runner refuses', () => downBreaker.fire(noop).catch(doNothing), 'refused before opossum, one Error for all')
    concurrent('I/O', 'command: GET, pooled connection', () => client.getBuffer(entryKey), 'includes the Redis round trip; no per-command timer')
    concurrent('I/O', 'command: GET, ioredis commandTimeout', () => timedClient.getBuffer(entryKey), 'ioredis arms and deletes a timer per command')
    concurrent('I/O', 'guarded GET, one breaker call each', () => breaker.fire(getOp, entryKey), 'breaker, lease and timer per GET')
    concurrent('I/O', 'guarded GET, one breaker call per turn', () => breaker.fireInTurn(getOp, entryKey), 'the hot path: a turn\'s GETs share one')
    concurrent('I/O', 'cache.get: guarded GET + decode', () => internals.cache.get(hash))
    // --- together
    sync('together', 'L1 hit: validateLocally (service)', () => withL1.internals.validator.validateLocally(hash))
    concurrent('together', 'Redis hit: validate (service)', () => internals.validator.validate(hash))
    concurrent('HTTP', 'inject: bare route', () => post(bare))
    concurrent('HTTP', 'inject: service, L1 hit', () => post(withL1))
    concurrent('HTTP', 'inject: service, Redis hit', () => post(service))

    say(`bench:hot: ${bench.tasks.length} stages, ${TIME_MS} ms each, ${ROUNDS} rounds…`)
    for (let round = 1; round <= ROUNDS; round++) {
      await bench.run()
      for (const task of bench.tasks) {
        const result = task.result
        const info = perOp.get(task.name)!
        if (result.state !== 'completed') throw new Error(`bench:hot: ${task.name}: ${result.state}`)
        info.rounds.push({ us: (result.latency.p50 * 1000) / info.ops, cpuUs: info.cpuUs })
      }
      say(`  round ${round}/${ROUNDS} done`)
    }
    for (const [name, info] of perOp) {
      const us = median(info.rounds.map((r) => r.us))
      const cpus = info.rounds.flatMap((r) => (r.cpuUs === undefined ? [] : [r.cpuUs]))
      rows.push({ group: info.group, name, us, cpuUs: cpus.length > 0 ? median(cpus) : undefined, note: info.note })
    }
    report(rows)
    timedClient.disconnect()
  } finally {
    await Promise.all(apps.map((app) => app.close()))
    await bare.close()
    await dropSchema(DATABASE_URL, schema)
  }
}

function report(rows: Row[]) {
  const us = (name: string) => rows.find((r) => r.name.startsWith(name))?.us ?? NaN
  const cpu = (name: string) => rows.find((r) => r.name.startsWith(name))?.cpuUs ?? NaN
  const f = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '' : v < 10 ? v.toFixed(2) : v.toFixed(1))
  const lines = [
    START,
    '## Hot path cost model',
    '',
    `Generated by \`npm run bench:hot\` on ${new Date().toISOString()} (Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}): ` +
      `each stage of a hit timed in isolation with tinybench (${TIME_MS} ms per stage, median sample; median of ${ROUNDS} rounds), in one process on the ` +
      `local Redis. Sync stages: ${BATCH} calls per sample. Async stages: ${CONCURRENCY} concurrent calls per sample; their ` +
      `wall time per call includes waiting, their CPU per call is the process's (user + system) over the stage.`,
    '',
    '| group | stage | µs per call (wall) | µs CPU per call | note |',
    '|---|---|---:|---:|---|',
    ...rows.map((r) => `| ${r.group} | ${r.name} | ${f(r.us)} | ${f(r.cpuUs)} | ${r.note ?? ''} |`),
    '',
    'Derived (same run):',
    '',
    `- L1 hit, sum of its stages (hash + L1 lookup + verdict + metrics + serialise): ` +
      `${f(us('hash') + us('L1: lookup') + us('verdict') + us('metrics') + us('serialise: response'))} µs; ` +
      `\`validateLocally\` + hash + serialise: ${f(us('L1 hit: validateLocally') + us('hash') + us('serialise: response'))} µs.`,
    `- Guarding a GET over a bare GET, CPU per call: ${f(cpu('guarded GET, one breaker call each') - cpu('command: GET, pooled'))} µs with a breaker call each, ` +
      `${f(cpu('guarded GET, one breaker call per turn') - cpu('command: GET, pooled'))} µs with one per turn; ` +
      `opossum alone over a plain async call: ${f(cpu('opossum') - cpu('promise'))} µs.`,
    `- The service around the handler, over the bare route (inject, same schemas, wall time per request; inject's own ` +
      `cost is in all three): L1 hit ${f(us('inject: service, L1') - us('inject: bare'))} µs, Redis hit ` +
      `${f(us('inject: service, Redis') - us('inject: bare'))} µs. (Their CPU column counts the whole process, GC threads included: read it as noise.)`,
    END,
  ]
  const section = lines.join('\n')
  say(`\n${section}`)
  if (!WRITE || ONLY !== undefined) return
  const file = path.join(root, 'BENCHMARKS.md')
  const text = readFileSync(file, 'utf8')
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  writeFileSync(file, start >= 0 && end > start ? text.slice(0, start) + section + text.slice(end + END.length) : `${text.replace(/\n*$/, '\n\n')}${section}\n`)
  say('(BENCHMARKS.md: hot path cost model section written)')
}

await main()
// The apps are closed; anything left (a lingering socket) must not keep the process alive.
process.exit(0)
