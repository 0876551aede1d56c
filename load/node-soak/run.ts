/**
 * npm run soak: the seed's load test. An open-loop load (load/node-soak/loadgen.ts, a process of its own) against the
 * real server process over many keep-alive connections, with a Redis restart in the middle; checks the latency (p99
 * from each request's scheduled send time), the 503s inside and outside the restart's window, every answer, and what
 * only time shows: memory growth, leaked sockets or timers. Writes its summary into BENCHMARKS.md ("## Soak"),
 * generated, never by hand.
 *
 *   npm run soak                                   # 10 min, 1000 connections, 1,000 req/s; writes BENCHMARKS.md
 *   npm run soak -- --duration=60 --write=false    # a short run
 *   options: --connections --rate --arrivals=constant|poisson|burst (burst: the old autocannon shape, to compare) --sessions --revoked --recovery --warmup --sample-every --baseline=S (0: none)
 *   diagnostics: --server-env=K=V,K=V (extra server settings; the run then says so) --server-log=FILE --profile=DIR (--cpu-prof) --server-node-args="--trace-gc …"
 *
 * Everything listens on loopback; the load is bounded (rate x duration requests, each with a timeout). Redis is a
 * private redis-server on a free port (so it can be killed); Postgres is the shared test database, in a schema of its own.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { migrate } from '../../src/store/migrate.js'
import { freePort } from '../../src/dev/free-port.js'
import { startRedisServer } from '../../test/support/redis-server.js'
import { seedSessions } from '../bench/fixtures.js'
import { machineBusySeconds, measureBaseline, startBareServer, type BaselineResult } from './baseline.js'
import { renderSection, writeSection, type SoakReport } from './report.js'
import { breakerState, sample, summarise, unexplained, type Sample } from './samples.js'
import { startServer } from './server.js'
import { startLoad, tally } from './traffic.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]))
const num = (name: string, fallback: number) => Number(args.get(name) ?? fallback)
const DURATION_S = num('duration', 600)
const CONNECTIONS = num('connections', 1000)
/** Requests per second over all connections (the seed's 1000 users, one request a second each). */
const RATE = num('rate', 1000)
const ARRIVALS = args.get('arrivals') === 'poisson' ? 'poisson' : args.get('arrivals') === 'burst' ? 'burst' : 'constant'
/** The seed's bound on the 99th percentile, and the share of 503s allowed while Postgres carries the sessions. */
const P99_LIMIT_MS = 5
const WINDOW_503_LIMIT_PCT = 1
const SAMPLE_EVERY_S = num('sample-every', 5)
const WARMUP_S = num('warmup', Math.min(60, Math.round(DURATION_S / 4)))
const SESSIONS = num('sessions', 5000)
const REVOKED = num('revoked', 500)
/** How long after Redis is back 503s still count as the restart's (an empty cache refills through Postgres). */
const RECOVERY_S = num('recovery', 30)
const WRITE = args.get('write') !== 'false'
/** Seconds of the same load against a bare HTTP server first (load/node-soak/baseline.ts); 0 skips it. */
const BASELINE_S = num('baseline', 60)
/** Every how many of the service's requests the generator also asks a bare server, at the same time (0: no probe). */
const PROBE_EVERY = num('probe-every', 10)
// Diagnostics: a run with extra settings is not the defaults' run, and its section says which it had.
const SERVER_ENV = Object.fromEntries((process.argv.find((a) => a.startsWith('--server-env='))?.slice('--server-env='.length) ?? '')
  .split(',').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
const SERVER_LOG = args.get('server-log')
const PROFILE_DIR = args.get('profile')
/** Extra node flags for the server process, space-separated (e.g. --server-node-args=--trace-gc). */
const SERVER_NODE_ARGS = (process.argv.find((a) => a.startsWith('--server-node-args='))?.slice('--server-node-args='.length) ?? '').split(' ').filter(Boolean)
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

async function main(): Promise<number> {
  const startedAt = new Date().toISOString()
  const loadAvgAtStart = os.loadavg()[0]!
  // The server runs as the image runs it, from dist/: built from the checkout now, so the run measures this source.
  execFileSync(path.join(root, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
  // The floor first, while nothing else of the soak runs: the same load against a server that does nothing.
  let bare: BaselineResult | null = null
  if (BASELINE_S > 0) {
    say(`soak: baseline, ${BASELINE_S} s of the same load against a bare HTTP server`)
    bare = await measureBaseline(root, { connections: CONNECTIONS, rate: RATE, arrivals: ARRIVALS, validTokens: ['-'], revokedTokens: ['-'], serviceKey: '-' }, BASELINE_S)
    say(`soak: baseline p50 ${bare.latency.p50Ms.toFixed(2)} ms, p99 ${bare.latency.p99Ms.toFixed(2)} ms, p99.9 ${bare.latency.p999Ms.toFixed(2)} ms`)
  }
  const schema = `ssc_soak_${randomBytes(4).toString('hex')}`
  const client = new pg.Client({ connectionString: DATABASE_URL })
  await client.connect()
  const redis = await startRedisServer()
  const control = PROBE_EVERY > 0 ? await startBareServer(root) : undefined
  let server: Awaited<ReturnType<typeof startServer>> | undefined
  try {
    await migrate(client, schema)
    const validTokens = (await seedSessions(client, schema, SESSIONS, { tokenPrefix: 'soak' })).map((s) => s.token)
    const revokedTokens = (await seedSessions(client, schema, REVOKED, { tokenPrefix: 'soak', revoked: true })).map((s) => s.token)
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
      ...SERVER_ENV,
    }, { ...(SERVER_LOG ? { logFile: SERVER_LOG } : {}), nodeArgs: [...SERVER_NODE_ARGS, ...(PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [])] })
    const metricsUrl = `${server.base}/metrics`
    say(`soak: server ${server.base}, redis ${redis.url}, schema ${schema}; ${CONNECTIONS} connections, ${RATE} req/s (${ARRIVALS} arrivals), ${DURATION_S} s`)

    // "Valid cached tokens": fill the cache first (bounded concurrency), or the first second of 1000 connections is a
    // Postgres stampede the service rightly sheds with 503 SESSION_STORE_BUSY.
    // One connection per request (agent: false): the warming client leaves no keep-alive socket behind to inflate the
    // baseline the leak checks compare with.
    for (let i = 0; i < validTokens.length; i += 50) {
      await Promise.all(validTokens.slice(i, i + 50).map((token) => postOnce(`${server!.base}/validate`, JSON.stringify({ token }))))
    }
    await sleep(2000)
    const baseline = await sample(metricsUrl, 0)
    const baselineAt = Date.now()
    const machineBusyBefore = await machineBusySeconds()
    const load = startLoad(root, { url: server.base, connections: CONNECTIONS, rate: RATE, durationS: DURATION_S, arrivals: ARRIVALS, validTokens, revokedTokens, serviceKey,
      ...(control ? { probe: { url: control.url, every: PROBE_EVERY, connections: Math.max(1, Math.round(CONNECTIONS / PROBE_EVERY)) } } : {}) })
    const loadStart = await load.started
    baseline.t = (baselineAt - loadStart) / 1000
    const elapsed = () => (Date.now() - loadStart) / 1000
    const samples: Sample[] = []
    let sampling = true
    const sampler = (async () => {
      let previous = baseline
      while (sampling) {
        const s = await sample(metricsUrl, elapsed()).catch(() => undefined)
        if (s) {
          samples.push(s)
          const dt = Math.max(s.t - previous.t, 0.001)
          say(`  t=${s.t.toFixed(0)}s rss ${(s.rssBytes / 2 ** 20).toFixed(1)} MiB heap ${(s.heapUsedBytes / 2 ** 20).toFixed(1)} of ${(s.heapTotalBytes / 2 ** 20).toFixed(1)} MiB ext ${(s.externalBytes / 2 ** 20).toFixed(1)} MiB fds ${s.openFds} handles ${s.activeHandles} timers ${s.timers}` +
            ` cpu ${(((s.cpuSeconds - previous.cpuSeconds) / dt) * 100).toFixed(0)} % pg ${((s.postgresQueries - previous.postgresQueries) / dt).toFixed(0)} q/s ${(((s.postgresQuerySeconds - previous.postgresQuerySeconds) / Math.max(1, s.postgresQueries - previous.postgresQueries)) * 1000).toFixed(1)} ms/q busy ${s.storeBusy - previous.storeBusy} loop p99 ${s.loopDelayP99Ms.toFixed(0)} ms`)
          previous = s
        }
        const next = Date.now() + SAMPLE_EVERY_S * 1000
        while (sampling && Date.now() < next) await sleep(100)
      }
    })()

    // The restart is timed by the clock, half-way through the scheduled load, whatever the service answered so far.
    let restartAt: number | null = null
    let window: { from: number; to: number } | undefined
    let restarting: Promise<void> = Promise.resolve()
    let redisBackAt: number | null = null
    // From the kill on, the breaker is read twice a second until it has opened and closed again: how long Postgres
    // carried every request although Redis was back (bounded by the load's end).
    const breaker: { openedAt: number | null; closedAt: number | null } = { openedAt: null, closedAt: null }
    let watching: Promise<void> = Promise.resolve()
    const watchBreaker = async () => {
      while (elapsed() < DURATION_S && breaker.closedAt === null) {
        const state = await breakerState(metricsUrl).catch(() => undefined)
        if (state === 2 && breaker.openedAt === null) breaker.openedAt = elapsed()
        if (state === 0 && breaker.openedAt !== null && redisBackAt !== null) breaker.closedAt = elapsed()
        await sleep(500)
      }
    }
    const halfway = setTimeout(() => {
      watching = watchBreaker()
      restartAt = elapsed()
      window = { from: restartAt, to: Infinity }
      say(`  t=${restartAt.toFixed(0)}s killing and restarting redis`)
      restarting = redis.restart().then(() => {
        redisBackAt = elapsed()
        window!.to = redisBackAt + RECOVERY_S
        say(`  t=${redisBackAt.toFixed(0)}s redis is back`)
      })
    }, (DURATION_S * 1000) / 2)
    const result = await load.done.finally(() => clearTimeout(halfway))
        /** Busy CPU over the load on the whole machine, in % of one core (the machine has os.cpus().length of them). */
    const machineBusyPct = (((await machineBusySeconds()) - machineBusyBefore) / result.elapsedS) * 100
    await restarting
    await watching
    sampling = false
    await sampler
    const traffic = tally(result, window)
    const underLoad = samples.filter((x) => x.t <= result.elapsedS)
    const serverCpuPct = underLoad.length ? ((underLoad.at(-1)!.cpuSeconds - baseline.cpuSeconds) / (underLoad.at(-1)!.t - baseline.t)) * 100 : NaN

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
    const window503Pct = (traffic.inWindow.status503 / Math.max(traffic.inWindow.sent, 1)) * 100
    const verdicts = [
      { check: 'no wrong answer', ok: wrong === 0, detail: `${wrong} (revoked or unknown answered valid:true, valid answered valid:false, or a malformed body)` },
      { check: 'every request answered', ok: traffic.errors === 0 && traffic.timeouts === 0 && otherStatuses === 0, detail: `${traffic.errors} connection errors, ${traffic.timeouts} timeouts, ${otherStatuses} statuses other than 200/503` },
      {
        check: 'Redis restarted mid-run',
        ok: restartAt !== null,
        detail: restartAt === null ? 'never' : `killed at ${(restartAt as number).toFixed(1)} s, accepting again at ${redisBackAt === null ? '?' : (redisBackAt as number).toFixed(1)} s; ` +
          (breaker.openedAt === null
            ? 'the Redis breaker never read open (read every 0.5 s from the kill)'
            : `the Redis breaker read open at ${breaker.openedAt.toFixed(1)} s and closed again ${breaker.closedAt === null ? 'not before the end' : `at ${breaker.closedAt.toFixed(1)} s`} (read every 0.5 s)`),
      },
      {
        check: `p99 < ${P99_LIMIT_MS} ms over every request, from its scheduled send time`,
        ok: traffic.latency.p99Ms < P99_LIMIT_MS,
        detail: `p99 ${traffic.latency.p99Ms.toFixed(2)} ms (outside the restart window ${traffic.outside.latency.p99Ms.toFixed(2)} ms, inside it ${traffic.inWindow.latency.p99Ms.toFixed(2)} ms)` +
          (traffic.probe ? `; a bare server asked by the same generator at the same time: p99 ${traffic.probe.p99Ms.toFixed(2)} ms` : '') +
          (bare ? `; the bare server alone under the full load, first: p99 ${bare.latency.p99Ms.toFixed(2)} ms` : ''),
      },
      { check: 'no 503 outside the restart window', ok: traffic.outside.status503 === 0, detail: `${traffic.outside.status503} of ${traffic.outside.sent.toLocaleString('en')}` },
      {
        check: `≤ ${WINDOW_503_LIMIT_PCT} % 503 inside the restart window`,
        ok: window503Pct <= WINDOW_503_LIMIT_PCT,
        detail: `${traffic.inWindow.status503} of ${traffic.inWindow.sent.toLocaleString('en')} (${window503Pct.toFixed(2)} %)`,
      },
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
      commit: execFileSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8' }).trim(),
      machine: `Machine: ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, shared with other work (other agents' tests ran meanwhile; 1-min load average ${loadAvgAtStart.toFixed(1)} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end); load generator (its own process), service, Redis and Postgres on the same cores`,
      settings: { rate: RATE, arrivals: ARRIVALS, durationS: DURATION_S, connections: CONNECTIONS, warmupS: WARMUP_S, sampleEveryS: SAMPLE_EVERY_S, sessions: SESSIONS, revoked: REVOKED, recoveryS: RECOVERY_S },
      redisRestartAtS: restartAt,
      redisBackAtS: redisBackAt,
      breaker,
      window: window === undefined ? null : { from: (window as { from: number; to: number }).from, to: (window as { from: number; to: number }).to },
      serverCpuPct,
      machineBusyPct,
      bare,
      serverEnv: SERVER_ENV,
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
    await control?.stop()
  }
}

process.exitCode = await main()
