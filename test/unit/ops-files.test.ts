import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { EnvSchema } from '../../src/config.js'
import { createMetrics } from '../../src/telemetry/metrics.js'
import { loadOpenApi } from '../support/openapi.js'

/**
 * The deployment files, checked with what this machine has (no Docker engine, no promtool in CI): they parse, they
 * agree with each other, and they name only what the code has (routes, variables, metrics, commands).
 * Fuller checks, run by hand where the tools exist: `docker compose config -q`, `promtool check config`,
 * `promtool check rules`, `promtool test rules ops/prometheus/tests/*.yml` (see docs/operations.md).
 */

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url))
const read = (path: string) => readFileSync(root(path), 'utf8')
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML/JSON; the assertions are the type check
type Json = Record<string, any>

// merge: compose files use YAML 1.1 merge keys (`<<: *app-environment`).
const compose = parse(read('docker-compose.yml'), { merge: true }) as Json
const services = compose.services as Record<string, Json>
const openapiPaths = Object.keys(loadOpenApi().paths)
const declaredVariables = new Set(Object.keys(EnvSchema.properties))

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile')
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'))

  it('builds in two stages on Node 24 bookworm-slim: npm ci + build, then production dependencies only', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24-bookworm-slim$/m)
    expect(instructions.filter((l) => /^FROM /.test(l))).toEqual(['FROM ${NODE_IMAGE} AS build', 'FROM ${NODE_IMAGE} AS runtime'])
    expect(dockerfile).toMatch(/RUN npm ci --no-audit --no-fund\n/)
    expect(dockerfile).toMatch(/RUN npm run build\n/)
    expect(dockerfile).toMatch(/RUN npm ci --omit=dev --ignore-scripts/)
    expect(dockerfile).toMatch(/COPY --from=build \/app\/dist \.\/dist/)
  })

  it('runs as a non-root user, exec-form CMD, STOPSIGNAL SIGTERM, and a HEALTHCHECK on /health/live with node', () => {
    const runtime = instructions.slice(instructions.findIndex((l) => l.includes('AS runtime')))
    expect(runtime.find((l) => l.startsWith('USER '))).toBe('USER node')
    expect(runtime.at(-1)).toBe('CMD ["node", "dist/server.js"]')
    expect(runtime).toContain('STOPSIGNAL SIGTERM')
    const healthcheck = runtime.find((l) => l.startsWith('HEALTHCHECK '))
    expect(healthcheck).toMatch(/CMD \["node", "-e", ".*fetch\(.*\/health\/live/)
    expect(openapiPaths).toContain('/health/live')
  })

  it('builds from an allow-listed context (.dockerignore) that holds what the build copies', () => {
    const ignore = read('.dockerignore').split('\n').filter((l) => l && !l.startsWith('#'))
    expect(ignore[0]).toBe('*')
    for (const copied of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/']) {
      expect(ignore, copied).toContain(`!${copied}`)
    }
    expect(existsSync(root('src/store/migrate-cli.ts'))).toBe(true)
    expect(existsSync(root('src/server.ts'))).toBe(true)
  })
})

describe('docker-compose.yml', () => {
  it('depends only on services it defines, with conditions that start it in order', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [dependency, condition] of Object.entries((service.depends_on ?? {}) as Record<string, Json>)) {
        expect(Object.keys(services), `${name} depends on ${dependency}`).toContain(dependency)
        expect(['service_started', 'service_healthy', 'service_completed_successfully']).toContain(condition.condition)
        if (condition.condition === 'service_healthy') {
          expect(services[dependency]!.healthcheck?.test, `${dependency} needs a healthcheck`).toBeDefined()
        }
      }
    }
    expect(services['session-cache']!.depends_on).toMatchObject({
      redis: { condition: 'service_healthy' },
      postgres: { condition: 'service_healthy' },
      migrate: { condition: 'service_completed_successfully' },
    })
    expect(services.migrate!.command).toEqual(['node', 'dist/store/migrate-cli.js'])
    expect(services.migrate!.depends_on).toMatchObject({ postgres: { condition: 'service_healthy' } })
  })

  it('migrates as the tables\' owner and runs the service as its own Postgres role, created at initdb', () => {
    const user = (value: unknown) => new URL(String(value).replace(/\$\{[^}]+\}/g, 'secret')).username
    const owner = String((services.postgres!.environment as Json).POSTGRES_USER)
    expect(user((services.migrate!.environment as Json).MIGRATION_DATABASE_URL)).toBe(owner)
    for (const name of ['migrate', 'session-cache']) expect(user((services[name]!.environment as Json).DATABASE_URL), name).toBe('session_cache')
    expect(services.postgres!.volumes).toContain('./ops/postgres/compose-init-role.sh:/docker-entrypoint-initdb.d/10-session-cache-role.sh:ro')
    expect(read('ops/postgres/compose-init-role.sh')).toContain('CREATE ROLE session_cache LOGIN')
    // The image carries the role script the migrate job applies (src/store/runtime-role.ts reads it beside dist/).
    expect(read('Dockerfile')).toContain('COPY ops/postgres/runtime-role.sql ./ops/postgres/runtime-role.sql')
    expect(read('.dockerignore')).toContain('!ops/postgres/runtime-role.sql')
    expect(services.grafana!.depends_on).toMatchObject({ prometheus: { condition: 'service_healthy' } })
  })

  it('runs Redis 7 with a memory limit, allkeys-lru, and AUTH through a least-privilege ACL user the service logs in as', () => {
    const redis = services.redis!
    expect(redis.image).toMatch(/^redis:7\./)
    const command = (redis.command as string[]).join(' ')
    expect(command).toMatch(/--maxmemory \d+mb/)
    expect(command).toContain('--maxmemory-policy allkeys-lru')
    expect(command).toContain('--save ""')
    const app = services['session-cache']!.environment as Json
    const url = new URL(String(app.REDIS_URL).replace(/\$\{[^}]+\}/g, 'secret'))
    expect(url.username).toBe('ssc')
    // Users come from the shipped ACL file (test/integration/redis-acl.test.ts runs a server with it), its password
    // placeholders filled with the SHA-256 of the passwords from the environment.
    expect(redis.volumes).toContain('./ops/redis/users.acl:/etc/redis/users.acl.template:ro')
    expect(command).toContain('--aclfile /tmp/users.acl')
    expect(command).toMatch(/s\/@SSC_PASSWORD_SHA256@\/\$\$\(printf %s "\$\$REDIS_PASSWORD" \| sha256sum/)
    expect(command).toMatch(/s\/@ADMIN_PASSWORD_SHA256@\/\$\$\(printf %s "\$\$REDIS_ADMIN_PASSWORD" \| sha256sum/)
    const users = read('ops/redis/users.acl').trim().split('\n')
    const service = users.find((line) => line.startsWith(`user ${url.username} `))!
    expect(service).toContain('#@SSC_PASSWORD_SHA256@')
    // The ACL's key and channel patterns follow the service's key prefix.
    expect(service).toContain(` ~${app.REDIS_KEY_PREFIX}* `)
    expect(service).toContain(` &${app.REDIS_KEY_PREFIX}invalidations `)
    expect(service).toContain(' -@all ')
    expect(service).not.toMatch(/\+@(all|dangerous|admin|keyspace)/)
    expect(users.find((line) => line.startsWith('user default '))).toContain('#@ADMIN_PASSWORD_SHA256@')
  })

  it('keeps the default profile on one node and runs the sentinel and cluster profiles with their own ACL files', () => {
    const prefix = String((services['session-cache']!.environment as Json).REDIS_KEY_PREFIX)
    const inProfile = (profile: string) => Object.entries(services).filter(([, s]) => ((s.profiles ?? []) as string[]).includes(profile))
    const command = (s: Json) => ((s.command ?? []) as string[]).join(' ')
    // Without a profile: one Redis, and no service configured for another topology.
    for (const [name, service] of Object.entries(services)) {
      if (service.profiles) continue
      expect(Object.keys((service.environment ?? {}) as Json).filter((v) => /^REDIS_(SENTINEL|CLUSTER)/.test(v)), name).toEqual([])
    }
    expect(Object.entries(services).filter(([, s]) => !s.profiles && /^redis:/.test(String(s.image))).map(([name]) => name)).toEqual(['redis'])
    const topologies = {
      sentinel: { acl: 'ops/redis/sentinel/users.acl', dataNodes: 2, service: 'session-cache-sentinel' },
      cluster: { acl: 'ops/redis/cluster/users.acl', dataNodes: 6, service: 'session-cache-cluster' },
    }
    for (const [profile, { acl, dataNodes, service }] of Object.entries(topologies)) {
      const members = inProfile(profile)
      const nodes = members.filter(([, s]) => ((s.volumes ?? []) as string[]).includes(`./${acl}:/etc/redis/users.acl.template:ro`))
      expect(nodes, profile).toHaveLength(dataNodes)
      for (const [name, node] of nodes) {
        // The same cache settings as the one node, the same Redis image, and a replication user on every node.
        expect(node.image, name).toBe(services.redis!.image)
        for (const flag of ['--maxmemory 256mb', '--maxmemory-policy allkeys-lru', '--save ""', '--appendonly no', '--aclfile /tmp/users.acl', '--masteruser replica']) {
          expect(command(node), `${name}: ${flag}`).toContain(flag)
        }
        expect(command(node), name).toContain('sh /etc/redis/render-acl.sh /etc/redis/users.acl.template /tmp/users.acl')
        expect(node.healthcheck.test.join(' '), name).toContain('--user ssc')
      }
      const app = services[service]!
      expect(app.profiles).toEqual([profile])
      expect(app.image).toBe(services['session-cache']!.image)
      const env = app.environment as Json
      expect(env.REDIS_URL, service).toBeUndefined()
      expect(env.REDIS_USERNAME).toBe('ssc')
      expect(env.REDIS_KEY_PREFIX).toBe(prefix)
      const seeds = String(profile === 'sentinel' ? env.REDIS_SENTINELS : env.REDIS_CLUSTER_NODES).split(',')
      for (const seed of seeds) {
        const [host, port] = seed.split(':')
        expect(members.map(([name]) => name), `${service}: ${seed}`).toContain(host)
        expect(port).toBe(profile === 'sentinel' ? '26379' : '6379')
      }
    }
    const sentinels = inProfile('sentinel').filter(([, s]) => command(s).includes('--sentinel'))
    expect(sentinels).toHaveLength(3)
    expect((services['session-cache-sentinel']!.environment as Json).REDIS_SENTINELS.split(',')).toHaveLength(3)
    expect(command(services['redis-cluster-create']!)).toMatch(/--cluster create( redis-cluster-\d:6379){6} --cluster-replicas 1/)

    // The ACL files: the service user keeps to its prefix and channel with -@all first; replicas and sentinels get no keys.
    const line = (file: string, user: string) => read(file).trim().split('\n').find((l) => l.startsWith(`user ${user} `))!
    const render = read('ops/redis/render-acl.sh')
    for (const file of ['ops/redis/sentinel/users.acl', 'ops/redis/cluster/users.acl']) {
      const ssc = line(file, 'ssc')
      expect(ssc, file).toContain(` ~${prefix}* `)
      expect(ssc, file).toContain(` &${prefix}invalidations `)
      expect(ssc, file).toContain(' -@all ')
      expect(ssc, file).toContain(' +wait')
      expect(ssc, file).not.toMatch(/\+@|\+flush|\+keys|\+scan|\+config|\+debug|\+acl|\+cluster(?!\|(slots|info)\b)/)
      expect(line(file, 'replica'), file).toMatch(/ resetkeys resetchannels -@all \+psync \+replconf \+ping$/)
      for (const placeholder of read(file).match(/@[A-Z0-9_]+@/g) ?? []) expect(render, `${file}: ${placeholder}`).toContain(`fill ${placeholder.slice(1, -1)} `)
    }
    const onSentinels = 'ops/redis/sentinel/sentinel-users.acl'
    expect(line(onSentinels, 'ssc')).not.toContain('~')
    expect(line(onSentinels, 'ssc').split(' -@all ')[1]!.split(' ').every((c) => /^\+(sentinel\|(get-master-addr-by-name|sentinels)|subscribe|client\|setinfo)$/.test(c))).toBe(true)
    for (const placeholder of read(onSentinels).match(/@[A-Z0-9_]+@/g) ?? []) expect(render, `${onSentinels}: ${placeholder}`).toContain(`fill ${placeholder.slice(1, -1)} `)
  })

  it('gives the service only variables its config schema declares (plus the OpenTelemetry SDK ones)', () => {
    for (const name of ['session-cache', 'migrate']) {
      for (const variable of Object.keys(services[name]!.environment as Json)) {
        if (variable.startsWith('OTEL_')) continue
        expect(declaredVariables, `${name}: ${variable} is not in src/config.ts`).toContain(variable)
      }
    }
  })

  it('binds every published port to loopback and uses Postgres 16, Prometheus, Grafana and Jaeger (OTLP over HTTP)', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const port of (service.ports ?? []) as string[]) expect(port, name).toMatch(/^127\.0\.0\.1:/)
    }
    expect(services.postgres!.image).toMatch(/^postgres:16/)
    expect(services.prometheus!.volumes).toContain('./ops/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro')
    expect(services.grafana!.volumes).toContain('./ops/grafana/provisioning:/etc/grafana/provisioning:ro')
    expect(services['session-cache']!.environment.OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://jaeger:4318')
    expect(services.jaeger!.ports.some((p: string) => p.endsWith(':4318'))).toBe(true)
  })
})

describe('railway.json', () => {
  const railway = JSON.parse(read('railway.json')) as Json
  // The fields this file uses, typed as Railway's config-as-code reference documents them.
  const schema = {
    type: 'object',
    additionalProperties: false,
    required: ['build', 'deploy'],
    properties: {
      $schema: { const: 'https://railway.com/railway.schema.json' },
      build: {
        type: 'object',
        additionalProperties: false,
        required: ['builder', 'dockerfilePath'],
        properties: { builder: { enum: ['RAILPACK', 'DOCKERFILE', 'NIXPACKS'] }, dockerfilePath: { type: 'string' } },
      },
      deploy: {
        type: 'object',
        additionalProperties: false,
        required: ['healthcheckPath', 'healthcheckTimeout', 'restartPolicyType'],
        properties: {
          preDeployCommand: { type: 'array', items: { type: 'string' } },
          startCommand: { type: 'string' },
          healthcheckPath: { type: 'string', pattern: '^/' },
          healthcheckTimeout: { type: 'integer', minimum: 1 },
          restartPolicyType: { enum: ['ON_FAILURE', 'ALWAYS', 'NEVER'] },
          restartPolicyMaxRetries: { type: 'integer', minimum: 0 },
          overlapSeconds: { type: 'integer', minimum: 0 },
          drainingSeconds: { type: 'integer', minimum: 0 },
        },
      },
    },
  }

  it('is valid: Dockerfile build, /health/redis health check with a timeout, restart on failure with retries', () => {
    const validate = new Ajv2020({ allErrors: true }).compile(schema)
    expect(validate(railway), JSON.stringify(validate.errors)).toBe(true)
    expect(railway.build).toEqual({ builder: 'DOCKERFILE', dockerfilePath: 'Dockerfile' })
    expect(existsSync(root(railway.build.dockerfilePath))).toBe(true)
    expect(railway.deploy).toMatchObject({ healthcheckPath: '/health/redis', restartPolicyType: 'ON_FAILURE' })
    expect(railway.deploy.restartPolicyMaxRetries).toBeGreaterThan(0)
    expect(openapiPaths).toContain(railway.deploy.healthcheckPath)
    expect(railway.deploy.preDeployCommand).toEqual(['node dist/store/migrate-cli.js'])
  })

  it('drains for longer than the service takes to shut down', () => {
    const shutdownMs = (EnvSchema.properties.SHUTDOWN_TIMEOUT_MS as unknown as { default: number }).default
    expect(railway.deploy.drainingSeconds * 1000).toBeGreaterThan(shutdownMs)
  })
})

describe('Prometheus, alerts and the Grafana dashboard', () => {
  const exported = new Set<string>()
  beforeAll(async () => {
    const registry = createMetrics({ redisPool: () => ({ size: 0, available: 0, borrowed: 0, pending: 0 }) }).registry
    for (const metric of await registry.getMetricsAsJSON()) {
      const { name } = metric
      const type = String(metric.type)
      const names = type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : type === 'summary' ? [name, `${name}_sum`, `${name}_count`] : [name]
      for (const n of names) exported.add(n)
    }
  })
  // Series from redis_exporter (job "redis"), not from this service.
  const exporterSeries = new Set(['redis_memory_used_bytes', 'redis_memory_max_bytes', 'redis_evicted_keys_total', 'redis_expired_keys_total'])
  const ours = /\b(?:session_|circuit_breaker_|redis_pool_|redis_command_|postgres_query_|nodejs_|process_)[a-z0-9_]+/g
  const theirs = /\bredis_(?:memory|evicted|expired)_[a-z0-9_]+/g

  function expectKnownMetrics(expr: string, where: string) {
    for (const name of expr.match(ours) ?? []) expect(exported, `${where}: ${name}`).toContain(name)
    for (const name of expr.match(theirs) ?? []) expect(exporterSeries, `${where}: ${name}`).toContain(name)
  }

  const rules = readdirSync(root('ops/prometheus/rules'))
    .filter((f) => f.endsWith('.yml'))
    .flatMap((f) => (parse(read(`ops/prometheus/rules/${f}`)) as Json).groups.flatMap((g: Json) => g.rules as Json[]))

  it('scrapes the service, with the rules directory loaded', () => {
    const prometheus = parse(read('ops/prometheus/prometheus.yml')) as Json
    expect(prometheus.rule_files).toEqual(['rules/*.yml'])
    const job = (prometheus.scrape_configs as Json[]).find((j) => j.job_name === 'studio-session-cache')!
    expect(job.metrics_path).toBe('/metrics')
    expect(job.static_configs[0].targets).toEqual(['session-cache:3000'])
    expect(openapiPaths).toContain('/metrics')
    expect(rules.length).toBeGreaterThan(10)
  })

  it('alerts only on metrics that exist, each with a severity and a runbook section in docs/operations.md', () => {
    const operations = read('docs/operations.md')
    const anchors = new Set([...operations.matchAll(/^#{2,4} (.+)$/gm)].map((m) => m[1]!.trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')))
    for (const rule of rules) {
      expectKnownMetrics(rule.expr, rule.alert)
      expect(['critical', 'warning'], rule.alert).toContain(rule.labels?.severity)
      expect(rule.annotations?.runbook, rule.alert).toBe(`docs/operations.md#${String(rule.alert).toLowerCase()}`)
      expect(anchors, `docs/operations.md has no section "${rule.alert}"`).toContain(String(rule.alert).toLowerCase())
    }
  })

  it('provisions the datasource the dashboard uses, and the dashboard queries only metrics that exist', () => {
    const datasources = parse(read('ops/grafana/provisioning/datasources/datasources.yml')) as Json
    const uids = (datasources.datasources as Json[]).map((d) => d.uid)
    const dashboard = JSON.parse(read('ops/grafana/dashboards/studio-session-cache.json')) as Json
    const targets = (dashboard.panels as Json[]).flatMap((p) => (p.targets ?? []) as Json[])
    expect(targets.length).toBeGreaterThan(20)
    for (const target of targets) {
      expect(uids).toContain(target.datasource.uid)
      expectKnownMetrics(target.expr, target.legendFormat || target.expr)
    }
    const provider = parse(read('ops/grafana/provisioning/dashboards/dashboards.yml')) as Json
    expect(provider.providers[0].options.path).toBe('/var/lib/grafana/dashboards')
  })
})
