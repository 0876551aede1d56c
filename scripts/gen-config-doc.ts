/**
 * Renders docs/configuration.md from the config schema (src/config.ts, EnvSchema): every variable with its default,
 * its allowed values or range, and its description. The schema is the only source; test/unit/configuration-doc.test.ts
 * fails when the committed file is not what this renders.
 *
 *   npm run docs:config            # rewrite docs/configuration.md
 *   npm run docs:config -- --check # exit 1 if it is out of date (what CI's test does)
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { CONFIG_RULES, EnvSchema, type ConfigRule } from '../src/config.js'

export const CONFIGURATION_DOC_PATH = fileURLToPath(new URL('../docs/configuration.md', import.meta.url))

interface PropertySchema {
  type?: string
  anyOf?: Array<{ const?: unknown; type?: string }>
  const?: unknown
  default?: unknown
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  pattern?: string
  format?: string
  description?: string
}

/** Sections by name prefix, in the order they appear; a variable matching none lands in "Other". */
const SECTIONS: Array<{ title: string; match: (name: string) => boolean }> = [
  { title: 'Process and logging', match: (n) => ['NODE_ENV', 'HOST', 'PORT'].includes(n) || n.startsWith('LOG_') },
  { title: 'Postgres', match: (n) => n.startsWith('DATABASE_') },
  { title: 'Redis', match: (n) => n.startsWith('REDIS_') },
  { title: 'Circuit breaker (Redis)', match: (n) => n.startsWith('BREAKER_') },
  {
    title: 'Cache',
    match: (n) => n.startsWith('CACHE_') || n.startsWith('NEGATIVE_CACHE_') || n.startsWith('SLIDING_TTL_') || n.startsWith('L1_'),
  },
  {
    title: 'HTTP and service keys',
    match: (n) =>
      ['TOKEN_MAX_LENGTH', 'BODY_LIMIT_BYTES', 'SERVICE_API_KEYS', 'METRICS_API_KEYS'].includes(n) ||
      n.startsWith('REQUIRE_') ||
      n.startsWith('HTTP_'),
  },
  { title: 'Load shedding', match: (n) => n.startsWith('LOAD_SHED_') },
  { title: 'Health and lifecycle', match: (n) => ['HEALTH_TIMEOUT_MS', 'RETRY_AFTER_SECONDS'].includes(n) || n.startsWith('SHUTDOWN_') },
  { title: 'Tracing', match: (n) => n.startsWith('OTEL_') || n.startsWith('TRACING_') },
  { title: 'Telemetry: Redis pollers, hot keys, miss spikes', match: (n) => n.startsWith('TELEMETRY_') },
  { title: 'Development (npm run dev)', match: (n) => n.startsWith('EMBEDDED_') || n.startsWith('DEV_') },
]

/** Credentials: never logged, never committed; set them from the platform's secret store. */
const SECRETS = new Set(['DATABASE_URL', 'REDIS_URL', 'REDIS_PASSWORD', 'SERVICE_API_KEYS', 'METRICS_API_KEYS', 'CACHE_ENCRYPTION_KEYS', 'OTEL_EXPORTER_OTLP_HEADERS'])

const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('\n', ' ')
const code = (value: unknown) => `\`${String(value)}\``

function humanise(name: string, value: number): string {
  if (name.endsWith('_MS') && value >= 1000) return ` (${formatDuration(value / 1000)})`
  if (name.endsWith('_SECONDS') && value >= 60) return ` (${formatDuration(value)})`
  if (name.endsWith('_BYTES') && value >= 1024) return ` (${value % 1_048_576 === 0 ? `${value / 1_048_576} MiB` : `${value / 1024} KiB`})`
  return ''
}

function formatDuration(seconds: number): string {
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`
  return `${seconds} s`
}

function defaultOf(name: string, schema: PropertySchema): string {
  if (schema.default === undefined) return '(none)'
  if (typeof schema.default === 'number') return `${code(schema.default)}${humanise(name, schema.default)}`
  return code(schema.default)
}

function allowedOf(name: string, schema: PropertySchema): string {
  if (schema.anyOf && schema.anyOf.every((s) => s.const !== undefined)) return schema.anyOf.map((s) => code(s.const)).join(', ')
  switch (schema.type) {
    case 'boolean':
      return '`true`, `false`'
    case 'integer':
    case 'number': {
      const kind = schema.type === 'integer' ? 'integer' : 'number'
      if (schema.minimum !== undefined && schema.maximum !== undefined) {
        return `${kind} ${schema.minimum}–${schema.maximum}${humanise(name, schema.maximum)}`
      }
      if (schema.minimum !== undefined) return `${kind} ≥ ${schema.minimum}`
      if (schema.maximum !== undefined) return `${kind} ≤ ${schema.maximum}`
      return kind
    }
    case 'string': {
      const parts: string[] = []
      if (schema.pattern) parts.push(`matches ${code(schema.pattern)}`)
      else if ((schema.minLength ?? 0) >= 1) parts.push('non-empty string')
      else parts.push('string')
      if (schema.maxLength !== undefined) parts.push(`at most ${schema.maxLength} characters`)
      if (schema.format) parts.push(`format ${schema.format}`)
      return parts.join(', ')
    }
    default:
      return schema.type ?? 'see description'
  }
}

export function renderConfigurationDoc(
  schema: { properties: Record<string, unknown>; required?: string[] } = EnvSchema,
  rules: readonly ConfigRule[] = CONFIG_RULES,
): string {
  const properties = schema.properties as Record<string, PropertySchema>
  const names = Object.keys(properties)
  const grouped = new Map<string, string[]>()
  for (const name of names) {
    const title = SECTIONS.find((s) => s.match(name))?.title ?? 'Other'
    grouped.set(title, [...(grouped.get(title) ?? []), name])
  }
  const order = [...SECTIONS.map((s) => s.title), 'Other'].filter((t) => grouped.has(t))

  const lines: string[] = [
    '<!-- Generated from src/config.ts (EnvSchema) by `npm run docs:config`. Do not edit by hand: change the schema and',
    '     rerun; test/unit/configuration-doc.test.ts fails when this file is out of date. -->',
    '',
    '# Configuration',
    '',
    'Every setting is an environment variable, read once at start-up by `loadConfig` (src/config.ts, the only reader of',
    '`process.env`). An empty value counts as unset, so the default applies. A value that does not fit its type or range',
    'stops the process with one line per problem, before anything connects. Variables the schema does not declare are',
    'ignored.',
    '',
    `${names.length} variables. **secret** marks credentials: set them from the platform's secret store, never in a`,
    'committed file; the service never logs them (URLs are logged with the password masked).',
    '',
  ]
  for (const title of order) {
    lines.push(`## ${title}`, '', '| Variable | Default | Allowed values | Description |', '| --- | --- | --- | --- |')
    for (const name of grouped.get(title) ?? []) {
      const p = properties[name]!
      const description = `${SECRETS.has(name) ? '**secret** ' : ''}${p.description ?? ''}`
      lines.push(`| ${code(name)} | ${cell(defaultOf(name, p))} | ${cell(allowedOf(name, p))} | ${cell(description)} |`)
    }
    lines.push('')
  }
  lines.push(
    '## Cross-field rules',
    '',
    `What one variable's type and range cannot say: ${rules.length} rules (\`CONFIG_RULES\` in src/config.ts), all checked at start-up,`,
    'every broken one reported.',
    '',
    ...rules.map((r) => `- ${r.rule}`),
    '',
    'Deployment-specific variables (compose, Railway) are described in [operations.md](operations.md#deployment-variables).',
    '',
  )
  return lines.join('\n')
}

const isEntryPoint = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href
if (isEntryPoint) {
  const rendered = renderConfigurationDoc()
  if (process.argv.includes('--check')) {
    let current = ''
    try {
      current = readFileSync(CONFIGURATION_DOC_PATH, 'utf8')
    } catch {
      // missing counts as out of date
    }
    if (current !== rendered) {
      console.error('docs/configuration.md is out of date: run `npm run docs:config`')
      process.exit(1)
    }
  } else {
    writeFileSync(CONFIGURATION_DOC_PATH, rendered)
    console.warn(`wrote ${CONFIGURATION_DOC_PATH}`)
  }
}
