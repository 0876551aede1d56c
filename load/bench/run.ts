/**
 * npm run bench: measures, in one run on this machine, the framework's ceiling (a bare Fastify route), the no-cache
 * baseline (Postgres only), a lean Redis path, and the service on its hit path (on one Redis node, and on a Sentinel
 * deployment and a Redis Cluster that the run starts on loopback: topologies.ts), miss path and with Redis down; then
 * reports requests/s and latency percentiles with ratios against the baselines, plus Redis bytes per cached session,
 * and writes the table to BENCHMARKS.md; then measures what the revocation triggers cost the Studio's own writes
 * (trigger-cost.ts; alone: --only=triggers or npm run bench:triggers) and adds that generated section to the file.
 * Machines are shared and noisy: scenarios are interleaved over several rounds and the median round is reported, so
 * only ratios within one run mean anything.
 *
 * Load comes from wrk (Debian package `wrk`; as root it is installed when missing), like the design notes' figures.
 * Every target listens on 127.0.0.1 and every run is bounded by its duration.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { keyScheme } from '../../src/cache/keys.js'
import { hashToken } from '../../src/domain/token.js'
import { freePort } from '../../src/dev/free-port.js'
import { cliArgs, HOT_SECTION } from './cli-args.js'
import { dropKeys, dropSchema, seedSchema, type SeededSession } from './fixtures.js'
import { TOPOLOGY_SHAPES, withTopologies, type TopologyKind } from './topologies.js'
import { existingTriggerSection, measureTriggerCost, renderTriggerSection, spliceTriggerSection, type TriggerCostResult } from './trigger-cost.js'
import { median } from './stats.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const args = cliArgs()
const DURATION_S = Number(args.get('duration') ?? 8)
const ROUNDS = Number(args.get('rounds') ?? 3)
const CONNECTIONS = Number(args.get('connections') ?? 50)
const SESSIONS = Number(args.get('sessions') ?? 2000)
const DATABASE_URL = args.get('database-url') ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = args.get('redis-url') ?? 'redis://127.0.0.1:6379'
/** --profile=<scenario name>[|<another>] writes a V8 CPU profile of each such target to bench-profiles/<name>/. */
const PROFILE = args.get('profile')?.split('|')
/** --allocations=<scenario name>[|…]: a sampling allocation profile of each such target (bench-profiles/<name>/). */
const ALLOCATIONS = args.get('allocations')?.split('|')
/** --service-env="K=V;K2=V2": extra environment for every service target (to see what one setting costs). */
const SERVICE_ENV = Object.fromEntries(
  (args.get('service-env') ?? '').split(';').filter(Boolean).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
) as Record<string, string>
/**
 * --only=a,b: scenarios by name or target, a topology (sentinel, cluster) or `triggers`. Names hold ", " (e.g.
 * "service: hit, Cluster"), so only a comma without a space after it separates two.
 */
const ONLY = args.get('only')?.split(/,(?! )/).map((o) => o.trim())

const say = (line: string) => process.stdout.write(`${line}\n`)

interface Scenario {
  name: string
  target: 'bare' | 'framework' | 'lean-redis' | 'lean-l1' | 'pg-only' | 'service'
  tokens: 'valid' | 'unique'
  env?: Record<string, string>
  /** Redis behind the service: the single node (REDIS_URL) unless this; started once for the run (topologies.ts). */
  topology?: TopologyKind
  warm?: boolean
  about: string
}

interface Result {
  requests: number
  durationUs: number
  connectErrors: number
  readErrors: number
  writeErrors: number
  statusErrors: number
  timeouts: number
  /** Service CPU time per request, in µs: far less sensitive to a noisy neighbour than requests/s. */
  cpuUsPerRequest?: number
  p50: number
  p95: number
  p99: number
  p999: number
  max: number
}


function ensureWrk(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' })
    return
  } catch (err) {
    // wrk prints its usage and exits 1 on --version; a missing binary throws ENOENT.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return
  }
  if (process.getuid?.() !== 0) throw new Error('wrk is not installed: apt-get install wrk')
  say('installing wrk (Debian package)…')
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' })
  execFileSync('apt-get', ['install', '-y', '-qq', 'wrk'], { stdio: 'inherit' })
}

/** The target running now: killed if this process exits without stopping it (an error, a signal). */
let running: ChildProcess | undefined
process.on('exit', () => running?.kill('SIGKILL'))

async function startTarget(scenario: Scenario, port: number, env: Record<string, string>): Promise<ChildProcess> {
  const profileDir = path.join(root, 'bench-profiles', scenario.name.replace(/[^\w-]+/g, '-'))
  const profiling = PROFILE?.includes(scenario.name) ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []
  const allocations = ALLOCATIONS?.includes(scenario.name) ? { BENCH_ALLOCATION_PROFILE: path.join(profileDir, `${Date.now()}.heapprofile`) } : {}
  if (ALLOCATIONS?.includes(scenario.name)) mkdirSync(profileDir, { recursive: true })
  const child = spawn(process.execPath, [...profiling, '--import', 'tsx', path.join(here, 'target.ts'), scenario.target], {
    cwd: root,
    env: { ...process.env, ...env, ...allocations, ...(scenario.target === 'service' ? SERVICE_ENV : {}), ...scenario.env, PORT: String(port), NODE_ENV: 'production', SERVICE_API_KEYS: process.env.SERVICE_API_KEYS ?? 'bench:bench-service-key-0123456789' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  running = child
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${scenario.name}: target did not start in 30 s`)), 30_000)
    let out = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes('READY')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${scenario.name}: target exited with ${code}`))
    })
  })
  child.stdout!.resume()
  return child
}

async function stopTarget(child: ChildProcess): Promise<void> {
  if (running === child) running = undefined
  if (child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

async function warm(port: number, tokens: string[]): Promise<void> {
  for (let i = 0; i < tokens.length; i += 50) {
    await Promise.all(
      tokens.slice(i, i + 50).map((token) =>
        fetch(`http://127.0.0.1:${port}/validate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token }),
        }).then((r) => r.arrayBuffer()),
      ),
    )
  }
  await new Promise((r) => setTimeout(r, 500))
}

function runWrk(port: number, mode: 'tokens' | 'unique', tokensFile: string, seconds: number): Result {
  const output = execFileSync(
    'wrk',
    ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '5s', '-s', path.join(here, 'wrk-validate.lua'), `http://127.0.0.1:${port}/validate`, '--', mode],
    { env: { ...process.env, TOKENS_FILE: tokensFile }, encoding: 'utf8', timeout: (seconds + 30) * 1000 },
  )
  const line = output.split('\n').find((l) => l.startsWith('RESULT '))
  if (!line) throw new Error(`wrk printed no result:\n${output}`)
  return JSON.parse(line.slice(7)) as Result
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); null elsewhere. */
function cpuSeconds(pid: number | undefined): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return null
  }
}
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

const rps = (r: Result) => r.requests / (r.durationUs / 1e6)

/** The service's own hit and miss counters, so a run shows it measured the path it claims to. */
async function cacheCounters(port: number): Promise<string> {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1] ?? NaN)
  return `  (hits ${read('session_cache_hits_total')}, misses ${read('session_cache_misses_total')})`
}

/** last_activity_at writes a service target made over its whole life (warm-up included): rows and statements. */
async function activityCounters(port: number): Promise<{ rows: number; statements: number }> {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const rows = Number(/^session_activity_total\{outcome="written"\} (\S+)$/m.exec(body)?.[1] ?? 0)
  const statements = [...body.matchAll(/^postgres_query_duration_seconds_count\{query="activity_record",outcome="\w+"\} (\S+)$/gm)]
    .reduce((n, m) => n + Number(m[1]), 0)
  return { rows, statements }
}

/**
 * On the single node (REDIS_URL), where the single-node scenarios left their entries; key names from keys.ts, the
 * session and user ids from the seed. A session counts when its entry and both its indexes are there.
 */
async function redisBytesPerSession(prefix: string, seeded: SeededSession[]) {
  const redis = new Redis(REDIS_URL)
  const keys = keyScheme(prefix)
  try {
    const sample = seeded.slice(0, 200)
    let entry = 0
    let sessionIndex = 0
    let userIndex = 0
    let counted = 0
    for (const { token, sessionId, userId } of sample) {
      const entryBytes = await redis.memory('USAGE', keys.entry(hashToken(token)))
      const sidBytes = await redis.memory('USAGE', keys.sessionIndex(sessionId))
      const uidBytes = await redis.memory('USAGE', keys.userIndex(userId))
      if (entryBytes === null || sidBytes === null || uidBytes === null) continue
      entry += entryBytes
      sessionIndex += sidBytes
      userIndex += uidBytes
      counted++
    }
    if (counted === 0) return null
    const mean = (bytes: number) => Math.round(bytes / counted)
    return {
      entry: mean(entry),
      sessionIndex: mean(sessionIndex),
      userIndex: mean(userIndex),
      indexes: mean(sessionIndex + userIndex),
      sampled: counted,
    }
  } finally {
    redis.disconnect()
  }
}

function bytesLine(bytes: Awaited<ReturnType<typeof redisBytesPerSession>>, prefix: string): string {
  if (!bytes) return 'Redis memory per cached session: no cached session found to measure'
  return (
    `Redis memory per cached session (MEMORY USAGE, mean of ${bytes.sampled}, key prefix of ${prefix.length} characters): ` +
    `entry ${bytes.entry} B, indexes ${bytes.indexes} B (session id key ${bytes.sessionIndex} B + user sorted set ` +
    `${bytes.userIndex} B), total ${bytes.entry + bytes.indexes} B`
  )
}

async function cleanup(schema: string, prefix: string) {
  await dropSchema(DATABASE_URL, schema)
  await dropKeys(REDIS_URL, prefix)
}

async function main() {
  const benchFile = path.join(root, 'BENCHMARKS.md')
  const measureTriggers = () => measureTriggerCost({ databaseUrl: DATABASE_URL, say })
  if (ONLY?.every((o) => o === 'triggers')) {
    const section = renderTriggerSection(await measureTriggers(), 'npm run bench -- --only=triggers')
    writeFileSync(benchFile, spliceTriggerSection(readFileSync(benchFile, 'utf8'), section))
    say(`\n${section}`)
    return
  }
  ensureWrk()
  const schema = `ssc_bench_${randomBytes(4).toString('hex')}`
  // As long as the default prefix (ssc:), so that the bytes per session are what a default deployment stores.
  const prefix = `b${randomBytes(1).toString('hex')}:`
  const closedRedisPort = await freePort()
  const scenarios: Scenario[] = [
    { name: 'bare route', target: 'bare', tokens: 'valid', about: 'Fastify, same schemas, constant answer' },
    {
      name: 'framework setup',
      target: 'framework',
      tokens: 'valid',
      about: "the service's Fastify setup (logger, request ids and their header, load shedding), constant answer",
    },
    { name: 'postgres only', target: 'pg-only', tokens: 'valid', about: 'full service, cache never hits' },
    {
      name: 'lean L1',
      target: 'lean-l1',
      tokens: 'valid',
      about: "the service's Fastify setup + SHA-256 + a Map lookup of the session's answer, sent at the turn's end (as L1 answers are), no I/O: an L1 hit's floor",
    },
    { name: 'lean redis', target: 'lean-redis', tokens: 'valid', warm: true, about: 'SHA-256 + one autopipelined GET, nothing else' },
    { name: 'service: hit', target: 'service', tokens: 'valid', warm: true, about: 'pool + breaker + metrics + logs at info' },
    {
      name: 'service: hit, Sentinel',
      target: 'service',
      tokens: 'valid',
      warm: true,
      topology: 'sentinel',
      about: 'as service: hit, Redis found through 3 sentinels (1 master, 1 replica; reads and writes on the master)',
    },
    {
      name: 'service: hit, Cluster',
      target: 'service',
      tokens: 'valid',
      warm: true,
      topology: 'cluster',
      about: 'as service: hit, on a Redis Cluster (3 masters + 3 replicas): each key to its slot\'s master',
    },
    {
      name: 'service: hit, L1 on',
      target: 'service',
      tokens: 'valid',
      warm: true,
      env: { L1_CACHE_TTL_MS: '1000' },
      about: 'as service: hit, with the in-process L1 tier (1 s), pub/sub coherent',
    },
    {
      name: 'service: hit, activity off',
      target: 'service',
      tokens: 'valid',
      warm: true,
      env: { SESSION_ACTIVITY_INTERVAL_SECONDS: '0' },
      about: 'as service: hit, without last_activity_at recording (on by default, every 60 s per session)',
    },
    { name: 'service: miss', target: 'service', tokens: 'unique', about: 'unknown token every time: GET, Postgres, negative fill' },
    {
      name: 'service: redis down',
      target: 'service',
      tokens: 'valid',
      env: { REDIS_URL: `redis://127.0.0.1:${closedRedisPort}` },
      about: 'breaker open, every answer from Postgres',
    },
  ]

  if (ONLY) {
    scenarios.splice(
      0,
      scenarios.length,
      ...scenarios.filter((s) => ONLY.includes(s.target) || ONLY.includes(s.name) || (s.topology !== undefined && ONLY.includes(s.topology))),
    )
  }
  const topologies = new Set(scenarios.flatMap((s) => (s.topology ? [s.topology] : [])))
  say(`bench: ${SESSIONS} sessions, ${CONNECTIONS} connections, ${DURATION_S}s per scenario, ${ROUNDS} rounds`)
  say('seeding Postgres…')
  const seeded = await seedSchema(DATABASE_URL, schema, SESSIONS, { tokenPrefix: 'bench' })
  const tokens = seeded.map((s) => s.token)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ssc-bench-'))
  const tokensFile = path.join(dir, 'tokens.txt')
  writeFileSync(tokensFile, tokens.join('\n'))
  const env = {
    DATABASE_URL,
    DATABASE_SCHEMA: schema,
    REDIS_URL,
    REDIS_KEY_PREFIX: prefix,
    LOG_LEVEL: 'info',
    NEGATIVE_CACHE_TTL_SECONDS: '10',
    // One key for every target of the run, so the lean path can open what the service sealed.
    CACHE_ENCRYPTION_KEYS: `bench:${randomBytes(32).toString('base64')}`,
  }

  const results = new Map<string, Result[]>(scenarios.map((s) => [s.name, []]))
  /** The default hit path's last_activity_at writes, per round: rows and statements over the target's life. */
  const activity: Array<{ rows: number; statements: number; lifeSeconds: number }> = []
  let bytes: Awaited<ReturnType<typeof redisBytesPerSession>> = null
  try {
    const interrupted = async () => {
      if (running) await stopTarget(running)
      await cleanup(schema, prefix)
    }
    await withTopologies(topologies, say, async (started) => {
      for (let round = 1; round <= ROUNDS; round++) {
        for (const scenario of scenarios) {
          const port = await freePort()
          const startedAt = performance.now()
          const child = await startTarget(scenario, port, scenario.topology ? { ...env, ...started.env(scenario.topology) } : env)
          try {
            if (scenario.warm) await warm(port, tokens)
            runWrk(port, scenario.tokens === 'valid' ? 'tokens' : 'unique', tokensFile, 1) // JIT and pools warm-up
            const cpuBefore = cpuSeconds(child.pid)
            const result = runWrk(port, scenario.tokens === 'valid' ? 'tokens' : 'unique', tokensFile, DURATION_S)
            const cpuAfter = cpuSeconds(child.pid)
            if (cpuBefore !== null && cpuAfter !== null) result.cpuUsPerRequest = ((cpuAfter - cpuBefore) * 1e6) / result.requests
            results.get(scenario.name)!.push(result)
            const counters = scenario.target === 'service' ? await cacheCounters(port) : ''
            if (scenario.name === 'service: hit') activity.push({ ...(await activityCounters(port)), lifeSeconds: (performance.now() - startedAt) / 1000 })
            const errors = result.connectErrors + result.readErrors + result.writeErrors + result.statusErrors + result.timeouts
            say(
              `round ${round}/${ROUNDS}  ${scenario.name.padEnd(24)} ${rps(result).toFixed(0).padStart(7)} req/s  ` +
                `p50 ${(result.p50 / 1000).toFixed(2)} ms  p99 ${(result.p99 / 1000).toFixed(2)} ms  ` +
                `cpu ${result.cpuUsPerRequest?.toFixed(1) ?? '?'} µs/req  errors ${errors}${counters}`,
            )
          } finally {
            await stopTarget(child)
          }
        }
      }
    }, interrupted)
    bytes = await redisBytesPerSession(prefix, seeded)
    // Printed on every run (an --only run writes no table): what docs/capacity.md's "Bytes per session" quotes.
    say(bytesLine(bytes, prefix))
  } finally {
    await cleanup(schema, prefix)
  }
  // After the HTTP scenarios, so that its Postgres load never overlaps theirs.
  const triggers: TriggerCostResult | null = !ONLY || ONLY.includes('triggers') ? await measureTriggers() : null
  const previous = readFileSync(benchFile, 'utf8')
  const triggerSection = triggers ? renderTriggerSection(triggers, 'npm run bench') : existingTriggerSection(previous)

  const summary = scenarios.map((s) => {
    const runs = results.get(s.name)!
    const rates = runs.map(rps)
    const med = median(rates)
    const chosen = runs[rates.indexOf(med)]!
    return { scenario: s, rps: med, result: chosen, errors: runs.reduce((n, r) => n + r.statusErrors + r.timeouts + r.connectErrors + r.readErrors + r.writeErrors, 0) }
  })
  const bare = summary.find((s) => s.scenario.target === 'bare')
  const pgOnly = summary.find((s) => s.scenario.target === 'pg-only')
  const hit = summary.find((s) => s.scenario.name === 'service: hit')
  if (!bare || !pgOnly || !hit) {
    say('(--only run: the baselines were not all measured, so BENCHMARKS.md is left as it was' + (triggers ? ', but for the trigger section)' : ')'))
    if (triggerSection && triggers !== null) writeFileSync(benchFile, spliceTriggerSection(previous, triggerSection))
    return
  }
  const ms = (us: number) => (us / 1000).toFixed(3)
  // Ratios are paired: each round's figure over the baseline's in the same round, then the median of those, so that a
  // slow or fast stretch of the machine moves both sides of a ratio (medians taken side by side could come from
  // different rounds).
  const metricOf: Record<PairedMetric, (r: Result) => number> = { rps, p99: (r) => r.p99, cpu: (r) => r.cpuUsPerRequest ?? NaN }
  const paired: Paired = (a, b, metric) => {
    const ra = results.get(a.scenario.name)!
    const rb = results.get(b.scenario.name)!
    const ratios = ra.map((r, i) => metricOf[metric](r) / metricOf[metric](rb[i]!)).filter((v) => Number.isFinite(v))
    return ratios.length === 0 ? NaN : median(ratios)
  }
  const cpu = (s: (typeof summary)[number]) => {
    const values = results.get(s.scenario.name)!.map((r) => r.cpuUsPerRequest).filter((v): v is number => v !== undefined)
    return values.length === 0 ? '?' : median(values).toFixed(1)
  }
  const rows = summary.map(
    (s) =>
      `| ${s.scenario.name} | ${s.rps.toFixed(0)} | ${ms(s.result.p50)} | ${ms(s.result.p95)} | ${ms(s.result.p99)} | ${ms(s.result.p999)} | ` +
      `${paired(s, bare, 'rps').toFixed(2)}× | ${paired(s, bare, 'p99').toFixed(2)}× | ${paired(s, pgOnly, 'rps').toFixed(2)}× | ` +
      `${cpu(s)} | ${s.errors} | ${s.scenario.about} |`,
  )
  const cpuModel = os.cpus()[0]?.model ?? 'unknown cpu'
  const redisVersion = await (async () => {
    const r = new Redis(REDIS_URL)
    const info = await r.info('server')
    r.disconnect()
    return /redis_version:(\S+)/.exec(info)?.[1] ?? '?'
  })()
  const targets = measuredTargets(summary, bare, pgOnly, bytes, paired, activity, SESSIONS)
  const targetTable = renderTargets(targets)
  const table = [
    `# Benchmarks`,
    ``,
    `Generated by \`npm run bench\` on ${new Date().toISOString()}. Rerun it to refresh this file; compare ratios, not absolute numbers.`,
    ``,
    `Machine: ${os.cpus().length} × ${cpuModel}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version}, Redis ${redisVersion}.`,
    `Load: wrk, 1 thread, ${CONNECTIONS} connections, ${DURATION_S} s per scenario after a 1 s warm-up, ${ROUNDS} interleaved rounds; figures are the ` +
      `median round's, ratios the median of the rounds' ratios (each round's figure over its baseline's in the same round);`,
    `${SESSIONS} seeded sessions, requests cycle through them. Load generator, service, Redis and Postgres share the same cores.`,
    ...(topologies.size > 0
      ? [
          `Redis topologies, started once for the run on loopback (every node a redis-server ${redisVersion} on the same cores): ` +
            `${[...topologies].map((t) => TOPOLOGY_SHAPES[t]).join('; ')}. The other service rows use the single node.`,
        ]
      : []),
    ``,
    `| scenario | req/s | p50 ms | p95 ms | p99 ms | p99.9 ms | × bare req/s | × bare p99 | × postgres-only req/s | service CPU µs/req | errors | what runs |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|`,
    ...rows,
    ``,
    ...targetTable,
    ``,
    ...summary
      .filter((s) => s.scenario.topology)
      .map(
        (s) =>
          `${s.scenario.name}: ${paired(s, hit, 'rps').toFixed(2)}× the single node's hit req/s, ${paired(s, hit, 'p99').toFixed(2)}× its p99 ` +
          `(${paired(s, bare, 'rps').toFixed(2)}× / ${paired(s, bare, 'p99').toFixed(2)}× the bare route's).`,
      )
      .flatMap((line) => ['', line]),
    ``,
    `Redis memory per cached session (MEMORY USAGE, mean of ${bytes?.sampled ?? 0} sessions): entry ${bytes?.entry ?? '?'} B, ` +
      `indexes (session id key + user sorted set) ${bytes?.indexes ?? '?'} B, total ${bytes ? bytes.entry + bytes.indexes : '?'} B ` +
      `→ about ${bytes ? Math.floor(2 ** 30 / (bytes.entry + bytes.indexes)).toLocaleString('en') : '?'} sessions per GiB before allocator overhead.`,
    ``,
  ].join('\n')
  // Sections of other generators stay: the trigger costs (replaced when this run measured them) and the soak's.
  const withTriggers = triggerSection ? spliceTriggerSection(table, triggerSection) : table
  // npm run bench:hot's cost model section is kept as it is (it has its own generator).
  const hotStart = previous.indexOf(HOT_SECTION.start)
  const hotEnd = previous.indexOf(HOT_SECTION.end)
  const hot = hotStart >= 0 && hotEnd > hotStart ? previous.slice(hotStart, hotEnd + HOT_SECTION.end.length) : ''
  const withHot = hot ? `${withTriggers.replace(/\n*$/, '\n\n')}${hot}\n` : withTriggers
  // The soak's section (its own generator) follows; the cost model, wherever it stood, is not carried twice.
  const withoutHot = hot ? previous.replace(hot, '').replace(/\n{3,}/g, '\n\n') : previous
  const soak = withoutHot.search(/^## Soak$/m)
  const file = soak < 0 ? withHot : `${withHot.replace(/\n*$/, '\n\n')}${withoutHot.slice(soak)}`
  writeFileSync(benchFile, file)
  // docs/performance.md carries the targets table from this run, README.md two lines of it (each between its markers).
  const at = new Date()
  for (const [file, block] of [
    ['docs/performance.md', renderPerformanceSummary(targets, at)],
    ['README.md', renderReadmeSummary(targets, at)],
  ] as const) {
    const target = path.join(root, file)
    writeFileSync(target, spliceBetween(file, readFileSync(target, 'utf8'), SUMMARY_START, SUMMARY_END, block))
  }
  say('\n' + file)
}

type Summary = { scenario: Scenario; rps: number; result: Result; errors: number }
interface Target {
  path: string
  target: string
  measured: string
  met: boolean | null
}

/** Issue 11's table: each path against its baseline from this run, and whether it meets its target. */
type PairedMetric = 'rps' | 'p99' | 'cpu'
type Paired = (a: Summary, b: Summary, metric: PairedMetric) => number

function measuredTargets(
  summary: Summary[],
  bare: Summary,
  pgOnly: Summary,
  bytes: { entry: number; indexes: number } | null,
  paired: Paired,
  activity: Array<{ rows: number; statements: number; lifeSeconds: number }>,
  sessions: number,
): Target[] {
  const row = (name: string) => summary.find((s) => s.scenario.name === name)
  const ratio = (s: Summary | undefined, base: Summary | undefined) => (s && base ? paired(s, base, 'rps') : NaN)
  const p99 = (s: Summary | undefined, base: Summary) => (s ? paired(s, base, 'p99') : NaN)
  const cpuRatio = (s: Summary | undefined, base: Summary) => (s ? `${paired(s, base, 'cpu').toFixed(2)}×` : 'not measured')
  const x = (v: number) => (Number.isNaN(v) ? 'not measured' : `${v.toFixed(2)}×`)
  const hit = row('service: hit')
  const l1 = row('service: hit, L1 on')
  const lean = row('lean redis')
  const leanL1 = row('lean L1')
  const miss = row('service: miss')
  const down = row('service: redis down')
  const activityOff = row('service: hit, activity off')
  const total = bytes ? bytes.entry + bytes.indexes : NaN
  const act = activity.length > 0 ? activity[Math.floor(activity.length / 2)]! : undefined
  return [
    {
      path: 'hit path, default configuration (× bare route)',
      target: '≥ 0.85× req/s; p99 ≤ 1.5×',
      measured: `${x(ratio(hit, bare))} req/s; p99 ${x(p99(hit, bare))}`,
      met: ratio(hit, bare) >= 0.85 && p99(hit, bare) <= 1.5,
    },
    {
      path: "the service's Fastify setup, no cache work (× bare route)",
      target: 'what the framework setup costs',
      measured: `${x(ratio(row('framework setup'), bare))} req/s; CPU per request ${cpuRatio(row('framework setup'), bare)}`,
      met: null,
    },
    { path: 'lean Redis path (× bare route)', target: 'the ceiling the service should approach', measured: `${x(ratio(lean, bare))} req/s; p99 ${x(p99(lean, bare))}`, met: null },
    {
      path: 'hit path against the lean Redis path',
      target: 'what the service adds to one round trip',
      measured: lean ? `${x(ratio(hit, lean))} req/s; CPU per request ${cpuRatio(hit, lean)}` : 'not measured',
      met: null,
    },
    { path: 'hit path with L1 on (× bare route)', target: '≥ 0.95× req/s', measured: `${x(ratio(l1, bare))} req/s`, met: ratio(l1, bare) >= 0.95 },
    {
      path: 'lean L1 path: setup + hash + in-memory lookup (× bare route)',
      target: 'the floor of an L1 hit',
      measured: `${x(ratio(leanL1, bare))} req/s; CPU per request ${leanL1 ? cpuRatio(leanL1, bare) : 'not measured'}`,
      met: null,
    },
    {
      path: 'hit path with L1 on against the lean L1 path',
      target: 'what the service adds around an L1 lookup',
      measured: leanL1 ? `${x(ratio(l1, leanL1))} req/s; CPU per request ${cpuRatio(l1, leanL1)}` : 'not measured',
      met: null,
    },
    {
      path: 'last_activity_at recording, on by default: hit path against the same with it off',
      target: 'what recording costs per request',
      measured: activityOff ? `${x(ratio(hit, activityOff))} req/s; CPU per request ${cpuRatio(hit, activityOff)}` : 'not measured',
      met: null,
    },
    {
      path: `last_activity_at writes for ${sessions} active sessions (service: hit, median round)`,
      target: 'at most one row per session per 60 s, in batches',
      measured: act
        ? `${act.rows} rows in ${act.statements} statements over the target's ${act.lifeSeconds.toFixed(0)} s (each session once: the run is ` +
          `shorter than the interval); steady state ${(sessions / 60).toFixed(1)} rows/s in at most 12 statements a minute`
        : 'not measured',
      met: act ? act.rows <= sessions : null,
    },
    { path: 'miss path, unknown token every time (× Postgres only)', target: '≥ 0.9× req/s', measured: `${x(ratio(miss, pgOnly))} req/s`, met: ratio(miss, pgOnly) >= 0.9 },
    { path: 'Redis down, breaker open (× Postgres only)', target: '≥ 0.95× req/s', measured: `${x(ratio(down, pgOnly))} req/s`, met: ratio(down, pgOnly) >= 0.95 },
    {
      path: 'Redis memory per cached session, indexes included',
      target: '≤ 300 B',
      measured: bytes ? `${total} B (entry ${bytes.entry} B, indexes ${bytes.indexes} B)` : 'not measured',
      met: bytes ? total <= 300 : null,
    },
  ]
}

function renderTargets(targets: Target[]): string[] {
  return [
    `| path | target | this run | met |`,
    `|---|---|---|---|`,
    ...targets.map((t) => `| ${t.path} | ${t.target} | ${t.measured} | ${t.met === null ? '—' : t.met ? 'yes' : 'no'} |`),
  ]
}

const SUMMARY_START = '<!-- performance summary: generated by npm run bench -->'
const SUMMARY_END = '<!-- end of performance summary -->'

function runLine(at: Date): string {
  return `${at.toISOString().slice(0, 10)}, ${ROUNDS} interleaved rounds of ${DURATION_S} s, median round; ratios against baselines measured in the same run`
}

function renderPerformanceSummary(targets: Target[], at: Date): string {
  return [
    SUMMARY_START,
    `From the latest full \`npm run bench\` (${runLine(at)}; the whole table and the cost model are in [\`BENCHMARKS.md\`](../BENCHMARKS.md)):`,
    ``,
    ...renderTargets(targets),
    SUMMARY_END,
  ].join('\n')
}

/** The README keeps two lines of the table: the hit paths against the bare route, the rest against Postgres only. */
function renderReadmeSummary(targets: Target[], at: Date): string {
  const said = (prefix: string) => {
    const t = targets.find((row) => row.path.startsWith(prefix))
    return t ? `${t.measured} (${t.target}: ${t.met === null ? '—' : t.met ? 'met' : 'missed'})` : 'not measured'
  }
  return [
    SUMMARY_START,
    `- \`npm run bench\` (${at.toISOString().slice(0, 10)}, median of ${ROUNDS} rounds), against a bare Fastify route: ` +
      `hit path ${said('hit path, default')}, with L1 ${said('hit path with L1 on (×')}.`,
    `- Against a Postgres-only service: miss path ${said('miss path')}, Redis down ${said('Redis down')}; ` +
      `Redis per cached session ${said('Redis memory')}.`,
    SUMMARY_END,
  ].join('\n')
}

function spliceBetween(file: string, text: string, start: string, end: string, block: string): string {
  const from = text.indexOf(start)
  const to = text.indexOf(end)
  if (from < 0 || to < from) throw new Error(`${file} has no ${start} … ${end} block to replace`)
  return text.slice(0, from) + block + text.slice(to + end.length)
}

await main()
