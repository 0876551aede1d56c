/**
 * What the revocation triggers (src/store/migrations/002-revocation-outbox.ts) cost the Studio's own writes.
 *
 * Two fresh schemas in the same database, seeded with the same rows (same ids, tokens, users):
 * - "with trigger": `migrate()`, i.e. the Studio tables plus the outbox, its functions and the four triggers;
 * - "without trigger": only `platformSessionsMigration` (001): the same tables and indexes, no outbox, no triggers:
 *   the Studio's database as it was before 002.
 * Each round runs every case on both schemas, the first schema alternating from round to round, so a noisy neighbour
 * hits both sides alike; the median round is reported. Outbox rows are counted in the table, notifications by
 * LISTENing on the schema's channel (src/store/outbox-channel.ts) and fencing each case with a sentinel NOTIFY sent
 * after its last statement committed (notifications arrive in commit order). The silent cases (routine update, insert,
 * the 100K expired-row cleanup) must write no outbox row and send no notification: the run fails if one does.
 *
 * Used by `npm run bench` (load/bench/run.ts) and runnable alone: `npm run bench:triggers`, which rewrites only the
 * generated trigger section of BENCHMARKS.md. Every loop is bounded in count and by a run deadline; Postgres only on
 * the URL given (127.0.0.1 by default). Both schemas are dropped at the end, also on failure.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { hashToken } from '../../src/domain/token.js'
import { migrate } from '../../src/store/migrate.js'
import { platformSessionsMigration } from '../../src/store/migrations/001-platform-sessions.js'
import { outboxChannel } from '../../src/store/outbox-channel.js'
import { cliArgs } from './cli-args.js'
import { median } from './stats.js'

export interface TriggerCostOptions {
  databaseUrl?: string
  rounds?: number
  users?: number
  liveSessions?: number
  expiredSessions?: number
  /** Concurrent clients for the single-row cases. */
  clients?: number
  routineStatements?: number
  insertStatements?: number
  logoutStatements?: number
  revokeStatements?: number
  banStatements?: number
  bulkLiveRows?: number
  /** The whole measurement is abandoned (schemas dropped) past this. */
  maxSeconds?: number
  say?: (line: string) => void
}

type Side = 'without' | 'with'
type Unit = 'µs' | 'ms' | '/s'

export interface TriggerCase {
  name: string
  unit: Unit
  /** Whether a larger value is better (statements/s) or worse (time). */
  higherIsBetter: boolean
  /** Median over rounds of each round's value, per side. */
  without: number
  with: number
  perRound: Record<Side, number[]>
  statements: number
  /** With-trigger schema, summed over all rounds. */
  outboxRows: number
  notifications: number
  /** What the triggers are meant to do per statement: 0 for a silent case. */
  expectedPerStatement: 0 | 1
  note?: string
}

export interface TriggerCostResult {
  generatedAt: string
  postgres: string
  machine: string
  node: string
  settings: Required<Omit<TriggerCostOptions, 'databaseUrl' | 'say' | 'maxSeconds'>>
  cases: TriggerCase[]
  seconds: number
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n)

/** Listens on one schema's outbox channel; `fence()` returns once every notification committed before it arrived. */
class NotificationCounter {
  private count = 0
  private fences = 0
  private waiting = new Map<string, () => void>()
  private constructor(
    private readonly client: pg.Client,
    private readonly channel: string,
  ) {}

  static async open(databaseUrl: string, schema: string): Promise<NotificationCounter> {
    const client = new pg.Client({ connectionString: databaseUrl })
    await client.connect()
    const counter = new NotificationCounter(client, outboxChannel(schema))
    client.on('notification', (msg) => {
      if (msg.channel !== counter.channel) return
      const release = msg.payload ? counter.waiting.get(msg.payload) : undefined
      if (release) release()
      else counter.count++
    })
    await client.query(`LISTEN "${counter.channel}"`)
    return counter
  }

  /** Sends a sentinel from `writer` (after the case's statements committed) and waits for it: bounded to 15 s. */
  async fence(writer: pg.ClientBase): Promise<number> {
    const payload = `fence:${randomUUID()}:${++this.fences}`
    const arrived = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no sentinel notification on ${this.channel} within 15 s`)), 15_000)
      this.waiting.set(payload, () => {
        clearTimeout(timer)
        this.waiting.delete(payload)
        resolve()
      })
    })
    await writer.query('SELECT pg_notify($1, $2)', [this.channel, payload])
    await arrived
    const seen = this.count
    this.count = 0
    return seen
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined)
  }
}

export async function measureTriggerCost(options: TriggerCostOptions = {}): Promise<TriggerCostResult> {
  const databaseUrl = options.databaseUrl ?? 'postgres://postgres@127.0.0.1:5432/test'
  const say = options.say ?? ((line: string) => process.stdout.write(`${line}\n`))
  const settings = {
    rounds: options.rounds ?? 5,
    users: options.users ?? 2000,
    liveSessions: options.liveSessions ?? 20_000,
    expiredSessions: options.expiredSessions ?? 100_000,
    clients: options.clients ?? 8,
    routineStatements: options.routineStatements ?? 4000,
    insertStatements: options.insertStatements ?? 500,
    logoutStatements: options.logoutStatements ?? 500,
    revokeStatements: options.revokeStatements ?? 500,
    banStatements: options.banStatements ?? 200,
    bulkLiveRows: options.bulkLiveRows ?? 1000,
  }
  const s = settings
  // Routine updates cycle through a reserved slice; every other case consumes sessions nobody else touches.
  const routinePool = Math.min(2000, Math.floor(s.liveSessions / 10))
  const consumedPerRound = s.logoutStatements + s.revokeStatements + s.bulkLiveRows
  if (routinePool + consumedPerRound * s.rounds > s.liveSessions) {
    throw new Error(`trigger bench: ${s.liveSessions} live sessions cannot cover ${s.rounds} rounds of ${consumedPerRound} + ${routinePool} routine`)
  }
  if (s.banStatements * s.rounds > s.users) throw new Error(`trigger bench: ${s.users} users cannot cover ${s.rounds} rounds of ${s.banStatements} bans`)

  const started = Date.now()
  const deadline = started + (options.maxSeconds ?? 900) * 1000
  let interrupted = false
  const onSigint = () => {
    interrupted = true
  }
  process.once('SIGINT', onSigint)
  const check = () => {
    if (interrupted) throw new Error('trigger bench: interrupted')
    if (Date.now() > deadline) throw new Error(`trigger bench: over its ${options.maxSeconds ?? 900} s budget`)
  }

  const tag = randomBytes(4).toString('hex')
  const schemas: Record<Side, string> = { without: `ssc_trig_${tag}_without`, with: `ssc_trig_${tag}_with` }
  const q = (side: Side) => `"${schemas[side]}"`
  const pool = new pg.Pool({ connectionString: databaseUrl, max: s.clients + 1, statement_timeout: 120_000 })
  const admin = await pool.connect()
  const listeners: Partial<Record<Side, NotificationCounter>> = {}

  // The same rows in both schemas.
  const userIds = Array.from({ length: s.users }, () => randomUUID())
  const sessionIds = Array.from({ length: s.liveSessions }, () => randomUUID())
  const sessionUsers = sessionIds.map((_, i) => userIds[i % s.users]!)
  const tokens = sessionIds.map(() => hashToken(`bench_${randomBytes(24).toString('base64url')}`))
  const refresh = sessionIds.map(() => hashToken(`refresh_${randomBytes(24).toString('base64url')}`))

  const outboxCount = async () =>
    Number((await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${q('with')}.session_cache_outbox`)).rows[0]!.n)

  async function seed(side: Side) {
    if (side === 'with') await migrate(admin, schemas.with)
    else await admin.query(platformSessionsMigration(schemas.without))
    await admin.query(
      `INSERT INTO ${q(side)}.users (id, email, first_name, last_name, username)
       SELECT id, 'bench-' || id || '@example.test', 'Ada', 'Lovelace', 'ada' FROM unnest($1::uuid[]) AS id`,
      [userIds],
    )
    await admin.query(
      `INSERT INTO ${q(side)}.user_sessions (id, user_id, token, refresh_token, ip_address, user_agent, expires_at)
       SELECT id, uid, tok, ref, '203.0.113.7', 'Mozilla/5.0 (X11; Linux x86_64) Studio bench', now() + interval '7 days'
       FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS t(id, uid, tok, ref)`,
      [sessionIds, sessionUsers, tokens, refresh],
    )
  }

  /** 100K sessions that expired hours ago: what a cleanup job deletes. Same rows on both sides. */
  async function seedExpired(side: Side, round: number) {
    await admin.query(
      `INSERT INTO ${q(side)}.user_sessions (user_id, token, refresh_token, ip_address, user_agent, expires_at, created_at, last_activity_at)
       SELECT u.ids[1 + i % array_length(u.ids, 1)],
              encode(sha256(convert_to('expired:' || $2 || ':' || i, 'UTF8')), 'hex'),
              encode(sha256(convert_to('expired-refresh:' || $2 || ':' || i, 'UTF8')), 'hex'),
              '203.0.113.7', 'Mozilla/5.0 (X11; Linux x86_64) Studio bench',
              now() - interval '2 hours' - (i % 3600) * interval '1 second',
              now() - interval '9 days', now() - interval '3 days'
       FROM generate_series(1, $1::int) AS i, (SELECT $3::uuid[] AS ids) AS u`,
      [s.expiredSessions, `${tag}:${round}`, userIds],
    )
  }

  /** Runs `count` single-row statements over `clients` connections; returns per-statement latencies (µs) and wall time. */
  async function concurrently(count: number, sql: string, params: (i: number) => unknown[]) {
    const latencies: number[] = []
    let next = 0
    const t0 = nowUs()
    await Promise.all(
      Array.from({ length: s.clients }, async () => {
        const client = await pool.connect()
        try {
          while (next < count) {
            check()
            const i = next++
            const t = nowUs()
            await client.query(sql, params(i))
            latencies.push(nowUs() - t)
          }
        } finally {
          client.release()
        }
      }),
    )
    return { latencies, wallUs: nowUs() - t0 }
  }

  async function single(sql: string, params: unknown[]) {
    const t = nowUs()
    const res = await admin.query(sql, params)
    return { us: nowUs() - t, rowCount: res.rowCount ?? 0 }
  }

  const cases = new Map<string, TriggerCase>()
  const record = (name: string, unit: Unit, side: Side, value: number, expectedPerStatement: 0 | 1, higherIsBetter = false) => {
    let c = cases.get(name)
    if (!c) {
      c = { name, unit, higherIsBetter, without: 0, with: 0, perRound: { without: [], with: [] }, statements: 0, outboxRows: 0, notifications: 0, expectedPerStatement }
      cases.set(name, c)
    }
    c.perRound[side].push(value)
  }
  /** After a case on one side: counts what the triggers wrote, and fails the run if a silent case or the no-trigger side wrote anything. */
  async function account(names: string[], side: Side, statements: number, outboxBefore: number) {
    const notified = await listeners[side]!.fence(admin)
    const rows = side === 'with' ? (await outboxCount()) - outboxBefore : 0
    for (const name of names) {
      const c = cases.get(name)!
      if (side === 'without') {
        if (notified !== 0) throw new Error(`trigger bench: ${name} sent ${notified} notifications without any trigger`)
        continue
      }
      if (c.expectedPerStatement === 0 && (rows !== 0 || notified !== 0)) {
        throw new Error(`trigger bench: ${name} must stay silent but wrote ${rows} outbox rows and sent ${notified} notifications`)
      }
    }
    // Several rows of the table can share one set of statements (µs/statement and statements/s): count them once each.
    if (side === 'with') {
      for (const name of names) {
        const c = cases.get(name)!
        c.statements += statements
        c.outboxRows += rows
        c.notifications += notified
      }
    }
  }

  try {
    say(`trigger bench: schemas ${schemas.without} / ${schemas.with}; seeding ${s.users} users, ${s.liveSessions} live sessions each…`)
    for (const side of ['without', 'with'] as const) {
      await seed(side)
      listeners[side] = await NotificationCounter.open(databaseUrl, schemas[side])
    }
    // Warm-up (not measured): plans, caches, connections.
    for (const side of ['without', 'with'] as const) {
      await concurrently(500, `UPDATE ${q(side)}.user_sessions SET last_activity_at = now() WHERE id = $1`, (i) => [sessionIds[i % routinePool]])
    }

    let cursor = routinePool
    for (let round = 0; round < s.rounds; round++) {
      check()
      const order: Side[] = round % 2 === 0 ? ['without', 'with'] : ['with', 'without']
      const logoutIds = sessionIds.slice(cursor, (cursor += s.logoutStatements))
      const revokeIds = sessionIds.slice(cursor, (cursor += s.revokeStatements))
      const bulkIds = sessionIds.slice(cursor, (cursor += s.bulkLiveRows))
      const banUsers = userIds.slice(round * s.banStatements, (round + 1) * s.banStatements)
      const inserts = Array.from({ length: s.insertStatements }, () => ({
        token: hashToken(`bench_new_${randomBytes(24).toString('base64url')}`),
        refresh: hashToken(`refresh_new_${randomBytes(24).toString('base64url')}`),
      }))

      for (const side of order) {
        await seedExpired(side, round)
        await admin.query(`VACUUM ANALYZE ${q(side)}.user_sessions`)
        await admin.query(`VACUUM ANALYZE ${q(side)}.users`)
      }

      for (const side of order) {
        const t = q(side)
        let before = side === 'with' ? await outboxCount() : 0
        const routine = await concurrently(s.routineStatements, `UPDATE ${t}.user_sessions SET last_activity_at = now() WHERE id = $1`, (i) => [
          sessionIds[(i * 7919) % routinePool],
        ])
        record('routine: UPDATE last_activity_at, µs per statement', 'µs', side, median(routine.latencies), 0)
        record('routine: UPDATE last_activity_at, statements/s', '/s', side, routine.latencies.length / (routine.wallUs / 1e6), 0, true)
        await account(['routine: UPDATE last_activity_at, µs per statement', 'routine: UPDATE last_activity_at, statements/s'], side, s.routineStatements, before)

        before = side === 'with' ? await outboxCount() : 0
        const insert = await concurrently(
          s.insertStatements,
          `INSERT INTO ${t}.user_sessions (user_id, token, refresh_token, ip_address, user_agent, expires_at)
           VALUES ($1, $2, $3, '203.0.113.7', 'Mozilla/5.0 (X11; Linux x86_64) Studio bench', now() + interval '7 days')`,
          (i) => [userIds[i % s.users], inserts[i]!.token, inserts[i]!.refresh],
        )
        record('new session: INSERT, µs per statement', 'µs', side, median(insert.latencies), 0)
        await account(['new session: INSERT, µs per statement'], side, s.insertStatements, before)

        before = side === 'with' ? await outboxCount() : 0
        const logout = await concurrently(s.logoutStatements, `DELETE FROM ${t}.user_sessions WHERE id = $1`, (i) => [logoutIds[i]])
        record('logout: DELETE one live session, µs per statement', 'µs', side, median(logout.latencies), 1)
        record('logout: DELETE one live session, statements/s', '/s', side, logout.latencies.length / (logout.wallUs / 1e6), 1, true)
        await account(['logout: DELETE one live session, µs per statement', 'logout: DELETE one live session, statements/s'], side, s.logoutStatements, before)

        before = side === 'with' ? await outboxCount() : 0
        const revoke = await concurrently(s.revokeStatements, `UPDATE ${t}.user_sessions SET revoked_at = now() WHERE id = $1`, (i) => [revokeIds[i]])
        record('revoke: UPDATE revoked_at, µs per statement', 'µs', side, median(revoke.latencies), 1)
        await account(['revoke: UPDATE revoked_at, µs per statement'], side, s.revokeStatements, before)

        before = side === 'with' ? await outboxCount() : 0
        const ban = await concurrently(s.banStatements, `UPDATE ${t}.users SET banned_until = now() + interval '1 day' WHERE id = $1`, (i) => [banUsers[i]])
        record('ban: UPDATE users.banned_until, µs per statement', 'µs', side, median(ban.latencies), 1)
        await account(['ban: UPDATE users.banned_until, µs per statement'], side, s.banStatements, before)

        before = side === 'with' ? await outboxCount() : 0
        const bulkLive = await single(`DELETE FROM ${t}.user_sessions WHERE id = ANY($1::uuid[])`, [bulkIds])
        if (bulkLive.rowCount !== s.bulkLiveRows) throw new Error(`trigger bench: bulk live delete removed ${bulkLive.rowCount} rows, not ${s.bulkLiveRows}`)
        record(`bulk live: DELETE ${s.bulkLiveRows.toLocaleString('en')} live sessions, ms per statement`, 'ms', side, bulkLive.us / 1000, 1)
        await account([`bulk live: DELETE ${s.bulkLiveRows.toLocaleString('en')} live sessions, ms per statement`], side, 1, before)

        before = side === 'with' ? await outboxCount() : 0
        const cleanup = await single(`DELETE FROM ${t}.user_sessions WHERE expires_at < now()`, [])
        if (cleanup.rowCount !== s.expiredSessions) throw new Error(`trigger bench: cleanup removed ${cleanup.rowCount} rows, not ${s.expiredSessions}`)
        const cleanupName = `bulk cleanup: DELETE ${s.expiredSessions.toLocaleString('en')} expired sessions, ms per statement`
        record(cleanupName, 'ms', side, cleanup.us / 1000, 0)
        await account([cleanupName], side, 1, before)
        await admin.query(`VACUUM ${t}.user_sessions`)
      }
      const line = [...cases.values()].map((c) => `${c.name.split(':')[0]} ${fmt(c.perRound.without.at(-1)!, c.unit)}→${fmt(c.perRound.with.at(-1)!, c.unit)}`)
      say(`trigger bench round ${round + 1}/${s.rounds}: ${line.join('; ')}`)
    }

    // Token hashes carried: a ban row names every live session of the user; the bulk row names all its sessions.
    const carried = await admin.query<{ event: string; rows: string; tokens: string }>(
      `SELECT event, count(*) AS rows, sum(cardinality(token_hashes)) AS tokens FROM ${q('with')}.session_cache_outbox GROUP BY event ORDER BY event`,
    )
    const banRow = carried.rows.find((r) => r.event === 'user_banned')
    const banCase = [...cases.values()].find((c) => c.name.startsWith('ban:'))
    if (banRow && banCase) banCase.note = `each outbox row carried ${(Number(banRow.tokens) / Number(banRow.rows)).toFixed(1)} token hashes on average`

    // Where the cleanup's time goes, once more on each side outside the measured rounds: EXPLAIN ANALYZE times the
    // statement trigger's function (its scan of the transition table) apart from the delete itself.
    const explained: Partial<Record<Side, { total: number; trigger: number }>> = {}
    for (const side of ['without', 'with'] as const) {
      check()
      await seedExpired(side, s.rounds)
      await admin.query(`VACUUM ANALYZE ${q(side)}.user_sessions`)
      const outboxBefore = side === 'with' ? await outboxCount() : 0
      const plan = await admin.query<{ 'QUERY PLAN': [{ 'Execution Time': number; Triggers?: { 'Trigger Name': string; Time: number }[] }] }>(
        `EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM ${q(side)}.user_sessions WHERE expires_at < now()`,
      )
      if (side === 'with' && (await outboxCount()) !== outboxBefore) throw new Error('trigger bench: the EXPLAIN ANALYZE cleanup wrote an outbox row')
      const top = plan.rows[0]!['QUERY PLAN'][0]
      const trigger = top.Triggers?.find((tr) => tr['Trigger Name'] === 'session_cache_sessions_deleted')?.Time ?? 0
      explained[side] = { total: top['Execution Time'], trigger }
    }
    const cleanupCase = [...cases.values()].find((c) => c.name.startsWith('bulk cleanup:'))
    if (cleanupCase && explained.with && explained.without) {
      cleanupCase.note =
        `EXPLAIN ANALYZE of one more cleanup (executor time: no round trip, no commit): without ${explained.without.total.toFixed(1)} ms, ` +
        `with ${explained.with.total.toFixed(1)} ms of which the trigger function ${explained.with.trigger.toFixed(1)} ms`
    }

    for (const c of cases.values()) {
      c.without = median(c.perRound.without)
      c.with = median(c.perRound.with)
    }
    const version = (await admin.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v
    return {
      generatedAt: new Date().toISOString(),
      postgres: version,
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}`,
      node: process.version,
      settings,
      cases: [...cases.values()],
      seconds: (Date.now() - started) / 1000,
    }
  } finally {
    process.removeListener('SIGINT', onSigint)
    for (const l of Object.values(listeners)) await l.close()
    for (const schema of Object.values(schemas)) {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch((err: Error) => say(`could not drop ${schema}: ${err.message}`))
    }
    admin.release()
    await pool.end()
  }
}

function fmt(value: number, unit: Unit): string {
  if (unit === 'µs') return `${value.toFixed(0)} µs`
  if (unit === 'ms') return `${value.toFixed(1)} ms`
  return `${value.toFixed(0)}/s`
}

const START = '<!-- generated: trigger-cost (load/bench/trigger-cost.ts) -->'
const END = '<!-- end: trigger-cost -->'
export const TRIGGER_SECTION_TITLE = 'Studio writes with and without the revocation triggers'

/** The BENCHMARKS.md section, from the measured numbers only. */
export function renderTriggerSection(r: TriggerCostResult, command = 'npm run bench:triggers'): string {
  const s = r.settings
  const per = (n: number, statements: number) => {
    const each = n / statements
    return `${Number.isInteger(each) ? each : each.toFixed(2)} per statement (${n.toLocaleString('en')} / ${statements.toLocaleString('en')})`
  }
  const rows = r.cases.map((c) => {
    const ratio = c.with / c.without
    return (
      `| ${c.name} | ${fmt(c.without, c.unit)} | ${fmt(c.with, c.unit)} | ${ratio.toFixed(2)}× | ${per(c.outboxRows, c.statements)} | ` +
      `${per(c.notifications, c.statements)}${c.note ? `; ${c.note}` : ''} |`
    )
  })
  return [
    START,
    `## ${TRIGGER_SECTION_TITLE}`,
    ``,
    `Generated by \`${command}\` (load/bench/trigger-cost.ts) on ${r.generatedAt}, in ${r.seconds.toFixed(0)} s. ` +
      `Postgres ${r.postgres}, Node ${r.node}, ${r.machine}; Postgres shares the cores with the client and whatever else runs.`,
    ``,
    `Two fresh schemas, seeded alike (${s.users.toLocaleString('en')} users, ${s.liveSessions.toLocaleString('en')} live sessions, ` +
      `${s.expiredSessions.toLocaleString('en')} sessions expired hours ago re-seeded each round): **without trigger** has only the ` +
      `tables of migration 001 (no outbox, no triggers), **with trigger** is \`migrate()\` (001 + 002: the outbox and its four triggers). ` +
      `${s.rounds} rounds, each running every case on both schemas (the first schema alternating), median round shown. ` +
      `Single-row statements run on ${s.clients} concurrent connections, each statement its own transaction: per round ` +
      `${s.routineStatements} routine updates, ${s.insertStatements} inserts, ${s.logoutStatements} logouts, ${s.revokeStatements} revocations, ` +
      `${s.banStatements} bans (each a different user); µs per statement is the median statement latency seen by the client. ` +
      `Bulk cases are one statement each. Ratio = with ÷ without (for statements/s, below 1 means slower).`,
    ``,
    `Outbox rows and notifications are those of the with-trigger schema over all rounds (notifications counted by LISTEN on ` +
      `its channel, fenced by a sentinel NOTIFY); the without-trigger schema received none. The run fails if the routine update, ` +
      `the insert or the expired-row cleanup writes an outbox row or sends a notification.`,
    ``,
    `| case | without trigger | with trigger | ratio | outbox rows | notifications |`,
    `|---|---:|---:|---:|---|---|`,
    ...rows,
    END,
  ].join('\n')
}

/** Replaces the generated trigger section of a BENCHMARKS.md text (or appends it). */
export function spliceTriggerSection(markdown: string, section: string): string {
  const start = markdown.indexOf(START)
  const end = markdown.indexOf(END)
  if (start >= 0 && end > start) return markdown.slice(0, start) + section + markdown.slice(end + END.length)
  return `${markdown.replace(/\n*$/, '\n\n')}${section}\n`
}

/** The generated trigger section currently in a BENCHMARKS.md text, if any (kept when a run does not measure it). */
export function existingTriggerSection(markdown: string): string | null {
  const start = markdown.indexOf(START)
  const end = markdown.indexOf(END)
  return start >= 0 && end > start ? markdown.slice(start, end + END.length) : null
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
if (invokedDirectly) {
  const args = cliArgs()
  const num = (name: string) => (args.has(name) ? Number(args.get(name)) : undefined)
  const result = await measureTriggerCost({
    databaseUrl: args.get('database-url') ?? 'postgres://postgres@127.0.0.1:5432/test',
    rounds: num('rounds'),
    users: num('users'),
    liveSessions: num('live-sessions'),
    expiredSessions: num('expired-sessions'),
    clients: num('clients'),
    routineStatements: num('routine'),
    bulkLiveRows: num('bulk-live'),
    maxSeconds: num('max-seconds'),
  })
  const section = renderTriggerSection(result)
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../BENCHMARKS.md')
  writeFileSync(file, spliceTriggerSection(readFileSync(file, 'utf8'), section))
  process.stdout.write(`\n${section}\n\n(BENCHMARKS.md: trigger section rewritten)\n`)
}
