/**
 * npm run soak: mixed traffic against the real server process under many keep-alive connections, with a Redis
 * restart in the middle, watching the process for what only time shows: memory growth, leaked sockets or timers,
 * and any wrong answer. Writes its summary into BENCHMARKS.md ("## Soak"), generated, never by hand.
 *
 *   npm run soak                                   # 10 min or 1,000,000 requests, 1000 connections; writes BENCHMARKS.md
 *   npm run soak -- --duration=60 --connections=200 --write=false     # a smoke run
 *
 * Everything listens on loopback; the load is bounded by its duration and request count. Redis is a private
 * redis-server on a free port (so it can be killed); Postgres is the shared test database, in a schema of its own.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { hashToken } from '../../src/domain/token.js'
import { migrate } from '../../src/store/migrate.js'
import { freePort } from '../../src/dev/free-port.js'
import { startRedisServer } from '../../test/support/redis-server.js'
import { renderSection, writeSection, type SoakReport } from './report.js'
import { sample, summarise, unexplained, type Sample } from './samples.js'
import { startServer } from './server.js'
import { runTraffic } from './traffic.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]))
const num = (name: string, fallback: number) => Number(args.get(name) ?? fallback)
const DURATION_S = num('duration', 600)
const MAX_REQUESTS = num('max-requests', 1_000_000)
const CONNECTIONS = num('connections', 1000)
/**
 * Requests per second over all connections; default one per connection per second, the least autocannon can pace:
 * below that it would not slow each connection down but open fewer connections (it caps them at the rate). A soak
 * looks for what time does, not for the ceiling (`npm run bench`, load/breakpoint.ts): unthrottled, 1000 connections
 * on two shared cores are pure overload. --rate=0 drives it unthrottled anyway.
 */
const RATE = num('rate', CONNECTIONS)
const SAMPLE_EVERY_S = num('sample-every', 5)
const WARMUP_S = num('warmup', Math.min(60, Math.round(DURATION_S / 4)))
const SESSIONS = num('sessions', 5000)
const REVOKED = num('revoked', 500)
/** How long after Redis is back 503s still count as the restart's (an empty cache refills through Postgres). */
const RECOVERY_S = num('recovery', 30)
const WRITE = args.get('write') !== 'false'
const GROWTH_LIMIT_PCT = 10
const DATABASE_URL = args.get('database-url') ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const say = (line: string) => process.stdout.write(`${line}\n`)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function postOnce(url: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => resolve())
    })
    req.setTimeout(30_000, () => req.destroy(new Error('warming request timed out')))
    req.on('error', reject)
    req.end(body)
  })
}

async function seed(client: pg.Client, schema: string, count: number, revoked: boolean): Promise<string[]> {
  const tokens = Array.from({ length: count }, () => `soak_${randomBytes(24).toString('base64url')}`)
  const userIds = tokens.map(() => randomUUID())
  await client.query(
    `INSERT INTO "${schema}".users (id, email, first_name, last_name, username)
     SELECT id, 'soak-' || id || '@example.test', 'Ada', 'Lovelace', 'ada' FROM unnest($1::uuid[]) AS id`,
    [userIds],
  )
  await client.query(
    `INSERT INTO "${schema}".user_sessions (user_id, token, expires_at, revoked_at)
     SELECT id, hash, now() + interval '1 day', ${revoked ? 'now()' : 'NULL'} FROM unnest($1::uuid[], $2::text[]) AS t(id, hash)`,
    [userIds, tokens.map(hashToken)],
  )
  return tokens
}

async function main(): Promise<number> {
  const startedAt = new Date().toISOString()
  const schema = `ssc_soak_${randomBytes(4).toString('hex')}`
  const client = new pg.Client({ connectionString: DATABASE_URL })
  await client.connect()
  const redis = await startRedisServer()
  let server: Awaited<ReturnType<typeof startServer>> | undefined
  try {
    await migrate(client, schema)
    const validTokens = await seed(client, schema, SESSIONS, false)
    const revokedTokens = await seed(client, schema, REVOKED, true)
    const serviceKey = randomBytes(24).toString('base64url')
    server = await startServer(root, {
      PORT: String(await freePort()),
      DATABASE_URL,
      DATABASE_SCHEMA: schema,
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: 'soak:',
      SERVICE_API_KEYS: `soak:${serviceKey}`,
      CACHE_ENCRYPTION_KEYS: `soak:${randomBytes(32).toString('base64')}`,
      // Warnings and errors only: a line per request at 1000 connections would measure the pipe, not the service.
      LOG_LEVEL: 'warn',
    })
    const metricsUrl = `${server.base}/metrics`
    say(`soak: server ${server.base}, redis ${redis.url}, schema ${schema}; ${CONNECTIONS} connections, ${RATE || 'unthrottled'} req/s, ${DURATION_S} s or ${MAX_REQUESTS} requests`)

    // "Valid cached tokens": fill the cache first (bounded concurrency), or the first second of 1000 connections is a
    // Postgres stampede the service rightly sheds with 503 SESSION_STORE_BUSY.
    // One connection per request (agent: false): the warming client leaves no keep-alive socket behind to inflate the
    // baseline the leak checks compare with.
    for (let i = 0; i < validTokens.length; i += 50) {
      await Promise.all(validTokens.slice(i, i + 50).map((token) => postOnce(`${server!.base}/validate`, JSON.stringify({ token }))))
    }
    await sleep(2000)
    const baseline = await sample(metricsUrl, 0)
    const loadStart = Date.now()
    const elapsed = () => (Date.now() - loadStart) / 1000
    const samples: Sample[] = []
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const s = await sample(metricsUrl, elapsed()).catch(() => undefined)
        if (s) {
          samples.push(s)
          say(`  t=${s.t.toFixed(0)}s rss ${(s.rssBytes / 2 ** 20).toFixed(1)} MiB heap ${(s.heapUsedBytes / 2 ** 20).toFixed(1)} MiB fds ${s.openFds} handles ${s.activeHandles} timers ${s.timers}`)
        }
        const next = Date.now() + SAMPLE_EVERY_S * 1000
        while (sampling && Date.now() < next) await sleep(100)
      }
    })()

    let restartAt: number | null = null
    let window: { from: number; to: number } | undefined
    let restarting: Promise<void> = Promise.resolve()
    const traffic = await runTraffic({
      url: server.base,
      connections: CONNECTIONS,
      durationS: DURATION_S,
      maxRequests: MAX_REQUESTS,
      rate: RATE,
      validTokens,
      revokedTokens,
      serviceKey,
      onHalfway() {
        restartAt = elapsed()
        window = { from: restartAt, to: Infinity }
        say(`  t=${restartAt.toFixed(0)}s killing and restarting redis`)
        restarting = redis.restart().then(() => {
          window!.to = elapsed() + RECOVERY_S
          say(`  t=${elapsed().toFixed(0)}s redis is back`)
        })
      },
      in503Window: () => window !== undefined && elapsed() >= window.from && elapsed() <= window.to,
    })
    await restarting
    sampling = false
    await sampler

    // The load's connections are closed: what the process holds now should be what it held before the load.
    // Timers included: right after the load, retries and per-command timeouts still pending are not leaks yet.
    const leaked = (s: Sample) =>
      unexplained(s).fds > unexplained(baseline).fds + 2 ||
      unexplained(s).handles > unexplained(baseline).handles + 2 ||
      unexplained(s).timers > unexplained(baseline).timers + 2
    let afterLoad = await sample(metricsUrl, elapsed())
    for (let i = 0; i < 30 && leaked(afterLoad); i++) {
      await sleep(500)
      afterLoad = await sample(metricsUrl, elapsed())
    }
    const serverExit = await server.stop()

    const rss = summarise(samples, (s) => s.rssBytes, WARMUP_S)
    const heap = summarise(samples, (s) => s.heapUsedBytes, WARMUP_S)
    const wrong = Object.values(traffic.wrong).reduce((a, b) => a + b, 0)
    const otherStatuses = Object.values(traffic.otherStatus).reduce((a, b) => a + b, 0)
    const verdicts = [
      { check: 'no wrong answer', ok: wrong === 0, detail: `${wrong} (revoked or unknown answered valid:true, valid answered valid:false, or a malformed body)` },
      { check: 'every request answered', ok: traffic.errors === 0 && traffic.timeouts === 0 && otherStatuses === 0, detail: `${traffic.errors} connection errors, ${traffic.timeouts} timeouts, ${otherStatuses} statuses other than 200/503` },
      { check: 'Redis restarted mid-run', ok: restartAt !== null, detail: restartAt === null ? 'never' : `at ${(restartAt as number).toFixed(0)} s` },
      { check: 'no 503 outside the restart window', ok: traffic.status503OutsideWindow === 0, detail: `${traffic.status503OutsideWindow} outside, ${traffic.status503InWindow} within it` },
      { check: `RSS growth after warm-up ≤ ${GROWTH_LIMIT_PCT} %`, ok: rss.growthPct <= GROWTH_LIMIT_PCT, detail: `${rss.growthPct.toFixed(1)} %` },
      { check: `heap growth after warm-up ≤ ${GROWTH_LIMIT_PCT} %`, ok: heap.growthPct <= GROWTH_LIMIT_PCT, detail: `${heap.growthPct.toFixed(1)} %` },
      {
        check: 'no leaked sockets: open fds beyond the pools\' connections back to before the load (± 2)',
        ok: !leaked(afterLoad),
        detail: `${unexplained(baseline).fds} → ${unexplained(afterLoad).fds}`,
      },
      {
        check: 'no leaked handles or timers beyond the pools\' connections (± 2)',
        ok: unexplained(afterLoad).handles <= unexplained(baseline).handles + 2 && unexplained(afterLoad).timers <= unexplained(baseline).timers + 2,
        detail: `handles ${unexplained(baseline).handles} → ${unexplained(afterLoad).handles}, timers ${unexplained(baseline).timers} → ${unexplained(afterLoad).timers}`,
      },
      { check: 'server exits 0 on SIGTERM afterwards', ok: serverExit === 0, detail: String(serverExit) },
    ]
    const cpu = os.cpus()[0]?.model.split(' ').slice(0, 2).join(' ') ?? 'unknown CPU'
    const report: SoakReport = {
      startedAt,
      machine: `Machine: ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, shared with other work; load generator, service, Redis and Postgres on the same cores`,
      settings: { rate: RATE, durationS: DURATION_S, maxRequests: MAX_REQUESTS, connections: CONNECTIONS, warmupS: WARMUP_S, sampleEveryS: SAMPLE_EVERY_S, sessions: SESSIONS, revoked: REVOKED },
      redisRestartAtS: restartAt,
      traffic,
      rss,
      heap,
      baseline,
      afterLoad,
      samples,
      serverExit,
      verdicts,
    }
    const section = renderSection(report)
    say(`\n${section}`)
    if (WRITE) {
      writeSection(path.join(root, 'BENCHMARKS.md'), section)
      say('soak: wrote the "Soak" section of BENCHMARKS.md')
    }
    if (verdicts.some((v) => !v.ok)) {
      say(`soak: FAILED\n--- server output (tail) ---\n${server.tail()}`)
      return 1
    }
    return 0
  } finally {
    await server?.stop().catch(() => undefined)
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined)
    await client.end()
    await redis.close()
  }
}

process.exitCode = await main()
