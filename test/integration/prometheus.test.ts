import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { Errors } from '../../src/errors.js'
import { startTestApp, type TestApp } from '../support/app.js'
import { createTestDatabase, type TestDatabase } from '../support/database.js'
import { eventually } from '../support/gate.js'
import { exposedNames, metricNames } from '../support/promql.js'
import { freePort } from '../../src/dev/free-port.js'

/**
 * The Prometheus side, with the real tools (Debian's `prometheus` package: promtool and prometheus; .ci/run installs
 * it): the alert rules load and their unit tests pass with a firing and a quiet case for every alert; a live /metrics
 * body passes `promtool check metrics` and has every metric the dashboard and the rules name; and a real Prometheus
 * scrapes a running service, loads the rules, and answers queries with its series.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const at = (p: string) => path.join(ROOT, p)
const found = (bin: string) => spawnSync(bin, ['--version'], { encoding: 'utf8' }).status === 0
const TOOLS = found('prometheus') && found('promtool')
if (!TOOLS) {
  console.warn(
    'SKIPPED test/integration/prometheus.test.ts: the `prometheus` and `promtool` binaries are not on the PATH. ' +
      'Install Debian\'s `prometheus` package (apt-get install --no-install-recommends prometheus); .ci/run does.',
  )
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML and JSON, checked by the assertions
type Json = Record<string, any>
const RULE_FILES = readdirSync(at('ops/prometheus/rules')).filter((f) => f.endsWith('.yml')).map((f) => `ops/prometheus/rules/${f}`)
const TEST_FILES = readdirSync(at('ops/prometheus/tests')).filter((f) => f.endsWith('.yml')).map((f) => `ops/prometheus/tests/${f}`)
const rules = RULE_FILES.flatMap((f) => (parse(readFileSync(at(f), 'utf8')) as Json).groups.flatMap((g: Json) => g.rules as Json[]))
const dashboard = JSON.parse(readFileSync(at('ops/grafana/dashboards/studio-session-cache.json'), 'utf8')) as Json
const dashboardExprs = (dashboard.panels as Json[]).flatMap((p) => ((p.targets ?? []) as Json[]).map((t) => ({ panel: p.title as string, expr: t.expr as string })))
/** Series Prometheus makes itself, not the service. */
const SYNTHETIC = new Set(['up'])

function run(bin: string, args: string[], input?: string) {
  const result = spawnSync(bin, args, { cwd: ROOT, input, encoding: 'utf8', timeout: 60_000 })
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` }
}


describe('PromQL metric-name extraction (used below)', () => {
  it('finds metric names, not functions, keywords, labels, durations or Grafana variables', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le, source) (rate(session_validation_duration_seconds_bucket{job="x",code=~"a|b"}[$__rate_interval]))) > 1e-9 ' +
          'and on(instance) (max(redis_memory_used_bytes) / max(redis_memory_max_bytes > 0)) or vector(0) unless up offset 5m',
      ).sort(),
    ).toEqual(['redis_memory_max_bytes', 'redis_memory_used_bytes', 'session_validation_duration_seconds_bucket', 'up'])
  })
})

describe.skipIf(!TOOLS)('Prometheus (promtool, prometheus)', () => {
  let db: TestDatabase
  let t: TestApp
  let body: string

  beforeAll(async () => {
    db = await createTestDatabase()
    t = await startTestApp({ db, env: { SERVICE_API_KEYS: 'ci:a-service-key-long-enough-123' } })
    // Traffic of every kind, so the labelled series exist: hits, misses, not-valid answers, an invalidation, errors.
    const { token, sessionId } = await db.insertSession()
    await t.validate(token)
    await t.settle()
    await t.validate(token)
    await t.validate('never-issued')
    await t.validate('')
    await t.invalidate({ sessionId }, { authorization: 'Bearer a-service-key-long-enough-123' })
    await t.invalidate({ sessionId })
    await eventually(async () => (await t.app.inject({ method: 'GET', url: '/metrics' })).body.includes('\nredis_up 1\n'), 10_000, 'redis_up 1')
    body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
  })
  afterAll(async () => {
    await t?.close()
    await db?.drop()
  })

  it('promtool: the config and rule files are valid, and the rules’ unit tests pass', () => {
    const config = run('promtool', ['check', 'config', 'ops/prometheus/prometheus.yml'])
    expect(config.status, config.output).toBe(0)
    const checked = run('promtool', ['check', 'rules', ...RULE_FILES])
    expect(checked.status, checked.output).toBe(0)
    expect(checked.output).toContain('SUCCESS')
    const tested = run('promtool', ['test', 'rules', ...TEST_FILES])
    expect(tested.status, tested.output).toBe(0)
    expect(tested.output).not.toContain('FAILED')
  })

  it('every alert has a unit test in which it fires and one in which it stays quiet, and a runbook section', () => {
    const cases = TEST_FILES.flatMap((f) =>
      ((parse(readFileSync(at(f), 'utf8')) as Json).tests as Json[]).flatMap((test) => (test.alert_rule_test ?? []) as Json[]),
    )
    const operations = readFileSync(at('docs/operations.md'), 'utf8')
    for (const alert of new Set(rules.map((r) => r.alert as string))) {
      const mine = cases.filter((c) => c.alertname === alert)
      expect(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${alert}: no test where it fires`).toBe(true)
      expect(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${alert}: no test where it stays quiet`).toBe(true)
      expect(operations, `${alert}: no section in docs/operations.md`).toMatch(new RegExp(`^### ${alert}$`, 'm'))
    }
  })

  it('the 5xx error-rate alert and panel list exactly the catalogue’s 5xx codes', () => {
    const fiveHundreds = Object.values(Errors)
      .map((E) => new E())
      .filter((e) => (e.statusCode ?? 0) >= 500)
      .map((e) => e.code)
      .sort()
    const listed = (expr: string) => /code=~"([^"]+)"/.exec(expr)?.[1]?.split('|').sort()
    const rule = rules.find((r) => r.alert === 'SessionServiceErrorRateHigh')!
    expect(listed(rule.expr)).toEqual(fiveHundreds)
    const panel = dashboardExprs.find((e) => e.panel.startsWith('Error rate'))!
    expect(listed(panel.expr)).toEqual(fiveHundreds)
  })

  it('promtool check metrics finds nothing to complain about in a live /metrics body', () => {
    const linted = run('promtool', ['check', 'metrics'], body)
    expect(linted.output.trim()).toBe('')
    expect(linted.status).toBe(0)
  })

  it('every metric the dashboard and the alert rules name exists in a live /metrics body', () => {
    const exposed = exposedNames(body)
    const used = [
      ...rules.map((r) => ({ where: `rule ${r.alert as string}`, expr: r.expr as string })),
      ...dashboardExprs.map((e) => ({ where: `panel "${e.panel}"`, expr: e.expr })),
    ]
    expect(used.length).toBeGreaterThan(40)
    const missing = used.flatMap(({ where, expr }) => metricNames(expr).filter((n) => !SYNTHETIC.has(n) && !exposed.has(n)).map((n) => `${where}: ${n}`))
    expect(missing).toEqual([])
  })

  it('a real Prometheus scrapes the running service, loads the rules, and a query returns its series', async () => {
    await t.app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = t.app.server.address() as net.AddressInfo
    const dir = mkdtempSync(path.join(tmpdir(), 'ssc-prometheus-'))
    const webPort = await freePort()
    let prometheus: ChildProcess | undefined
    const output: string[] = []
    try {
      writeFileSync(
        path.join(dir, 'prometheus.yml'),
        [
          'global:',
          '  scrape_interval: 1s',
          '  evaluation_interval: 1s',
          'rule_files:',
          ...RULE_FILES.map((f) => `  - ${JSON.stringify(at(f))}`),
          'scrape_configs:',
          '  - job_name: studio-session-cache',
          '    metrics_path: /metrics',
          '    static_configs:',
          `      - targets: ["127.0.0.1:${port}"]`,
          '',
        ].join('\n'),
      )
      prometheus = spawn(
        'prometheus',
        [
          `--config.file=${path.join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${path.join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${webPort}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      prometheus.stdout?.on('data', (c: Buffer) => output.push(c.toString()))
      prometheus.stderr?.on('data', (c: Buffer) => output.push(c.toString()))
      const api = async (query: string) => {
        const response = await fetch(`http://127.0.0.1:${webPort}${query}`, { signal: AbortSignal.timeout(5000) })
        return (await response.json()) as Json
      }
      const instant = async (promql: string) => (await api(`/api/v1/query?query=${encodeURIComponent(promql)}`)).data?.result as Json[] | undefined
      const started = prometheus
      await eventually(
        () => started.exitCode !== null || fetch(`http://127.0.0.1:${webPort}/-/ready`).then((r) => r.ok, () => false),
        30_000,
        'Prometheus ready',
      )
      expect(started.exitCode, output.join('')).toBeNull()

      let series: Json[] = []
      await eventually(async () => {
        series = (await instant('session_validations_total{job="studio-session-cache"}')) ?? []
        return series.length > 0
      }, 30_000, 'a scraped session_validations_total series')
      expect(series.map((s) => s.metric.result)).toEqual(expect.arrayContaining(['valid', 'not_found']))
      expect(series.every((s) => s.metric.instance === `127.0.0.1:${port}`)).toBe(true)
      expect((await instant('up{job="studio-session-cache"}'))?.[0]?.value?.[1]).toBe('1')
      expect((await instant('redis_up{job="studio-session-cache"}'))?.[0]?.value?.[1]).toBe('1')
      expect(Number((await instant('postgres_pool_max{job="studio-session-cache"}'))?.[0]?.value?.[1])).toBeGreaterThan(0)

      // The rules are loaded, and every one of them evaluates without error against the real series.
      await eventually(async () => {
        const groups = ((await api('/api/v1/rules')).data?.groups ?? []) as Json[]
        const loaded = groups.flatMap((g) => g.rules as Json[])
        return loaded.length === rules.length && loaded.every((r) => r.health === 'ok')
      }, 30_000, 'every rule loaded and healthy')
    } finally {
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((resolve) => prometheus!.once('exit', resolve))
        prometheus.kill('SIGTERM')
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
        if (prometheus.exitCode === null) prometheus.kill('SIGKILL')
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }, 90_000)
})
