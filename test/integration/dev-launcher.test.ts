import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { TEST_REDIS_URL } from '../support/env.js'
import { eventually } from '../support/gate.js'
import { freePort } from '../../src/dev/free-port.js'

const root = path.resolve(import.meta.dirname, '../..')
// Postgres runs as the postgres user when we are root: the data directory's parents must be traversable by it.
const dataParent = mkdtempSync(path.join(os.tmpdir(), 'ssc-dev-'))
chmodSync(dataParent, 0o755)
const children: ChildProcess[] = []

afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  rmSync(dataParent, { recursive: true, force: true })
})


/** Runs `npm run dev`'s entry point exactly as the script does, without DATABASE_URL, and collects its output. */
async function runDev(redisUrl: string, dataDir = path.join(dataParent, 'pg')) {
  const port = await freePort()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: `ssc-dev-test-${port}:`,
    EMBEDDED_POSTGRES_DIR: dataDir,
    LOG_PRETTY: 'false',
  }
  delete env.DATABASE_URL
  const child = spawn(path.join(root, 'node_modules/.bin/node'), ['--import', 'tsx', 'src/dev.ts'], { cwd: root, env })
  children.push(child)
  let output = ''
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await eventually(() => output.includes('Server listening') || child.exitCode !== null, 60_000, 'dev server start')
  const token = (label: string) => new RegExp(`${label}.*?(demo_\\S+)`).exec(output)?.[1]
  const validate = async (t: string | undefined) =>
    (await fetch(`http://127.0.0.1:${port}/validate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: t }),
    })).json() as Promise<Record<string, unknown>>
  return { child, output: () => output, token, validate, exited, port }
}

describe('npm run dev (the embedded default)', () => {
  it('starts an embedded Postgres, seeds demo sessions, prints their tokens and a curl line, and answers them', async () => {
    const dev = await runDev(TEST_REDIS_URL)
    expect(dev.output()).toContain('embedded PostgreSQL listening')
    expect(dev.output()).toMatch(/curl -s http:\/\/127\.0\.0\.1:\d+\/validate/)
    expect(await dev.validate(dev.token('Ada, valid'))).toMatchObject({ valid: true, user: { email: 'ada@demo.studio' } })
    expect(await dev.validate(dev.token('Ada, expired'))).toEqual({ valid: false, reason: 'expired' })
    expect(await dev.validate(dev.token('Grace, revoked'))).toEqual({ valid: false, reason: 'revoked' })
    expect(await dev.validate(dev.token('Mallory, banned'))).toEqual({ valid: false, reason: 'user_banned' })
    dev.child.kill('SIGTERM')
    expect(await dev.exited).toBe(0)
  }, 120_000)

  it('when Redis is unreachable, says so plainly and serves from Postgres', async () => {
    const closed = await freePort()
    const dev = await runDev(`redis://127.0.0.1:${closed}`)
    expect(dev.output()).toContain('Redis is unreachable')
    expect(await dev.validate(dev.token('Grace, valid'))).toMatchObject({ valid: true, source: 'postgres' })
    dev.child.kill('SIGTERM')
    expect(await dev.exited).toBe(0)
  }, 120_000)

  // A checkout made with `mktemp -d` (0700) as root: Postgres runs as `postgres`, who cannot enter it.
  it.runIf(process.getuid?.() === 0)('as root, with a data directory the postgres user cannot enter, says where the data went and works', async () => {
    const closedParent = mkdtempSync(path.join(os.tmpdir(), 'ssc-dev-closed-'))
    chmodSync(closedParent, 0o700)
    let movedTo: string | undefined
    try {
      const dev = await runDev(TEST_REDIS_URL, path.join(closedParent, 'pg'))
      movedTo = /postgres user cannot enter .*ssc-dev-closed-.*: its data is in (\S+) instead/.exec(dev.output())?.[1]
      expect(movedTo, dev.output()).toBeDefined()
      expect(await dev.validate(dev.token('Ada, valid'))).toMatchObject({ valid: true })
      dev.child.kill('SIGTERM')
      expect(await dev.exited).toBe(0)
    } finally {
      rmSync(closedParent, { recursive: true, force: true })
      if (movedTo) rmSync(movedTo, { recursive: true, force: true })
    }
  }, 120_000)
})
