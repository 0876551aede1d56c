/**
 * Shared settings for the k6 scenarios: where the service is, which tokens to send, and the thresholds' defaults.
 * Every value comes from an environment variable (`k6 run -e NAME=value` or the shell's environment), so a scenario
 * file never needs editing to point at another stack or to tighten a threshold.
 */

/** A number from __ENV, or the default. */
export function envNumber(name: string, fallback: number): number {
  const raw = __ENV[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number (got ${JSON.stringify(raw)})`)
  return value
}

/** A string from __ENV, or the default. */
export function envString(name: string, fallback: string): string {
  const raw = __ENV[name]
  return raw === undefined || raw === '' ? fallback : raw
}

/**
 * Loopback, and the compose stack's own service name (for k6 run from a container on the compose network). These
 * scripts generate heavy traffic: they refuse any other host unless ALLOW_TARGET names it exactly.
 */
const ALLOWED_HOSTS = ['127.0.0.1', 'localhost', '[::1]', 'session-cache', 'host.docker.internal']

function hostOf(url: string): string {
  const match = /^https?:\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^/:?#]+)/i.exec(url)
  if (!match || match[1] === undefined) throw new Error(`BASE_URL is not an http(s) URL: ${url}`)
  return match[1].toLowerCase()
}

export const BASE_URL = envString('BASE_URL', 'http://127.0.0.1:3000').replace(/\/+$/, '')

const host = hostOf(BASE_URL)
if (!ALLOWED_HOSTS.includes(host) && envString('ALLOW_TARGET', '') !== host) {
  throw new Error(
    `BASE_URL host "${host}" is not loopback or the compose service; these scenarios only run against a local stack ` +
      `(set ALLOW_TARGET=${host} if this really is a load-test environment you own)`,
  )
}

/** The compose stack's default key (docker-compose.yml); set SERVICE_API_KEY to one of SERVICE_API_KEYS otherwise. */
export const SERVICE_API_KEY = envString('SERVICE_API_KEY', 'local-only-service-key')

/**
 * Seeded tokens: TOKENS (comma-separated, e.g. the ones `npm run dev` prints) or, by default, the `k6-token-1` ..
 * `k6-token-<TOKEN_COUNT>` that load/seed.sql inserts.
 */
function seededTokens(): string[] {
  const listed = envString('TOKENS', '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t.length > 0)
  if (listed.length > 0) return listed
  const count = envNumber('TOKEN_COUNT', 10_000)
  const prefix = envString('TOKEN_PREFIX', 'k6-token-')
  const out: string[] = []
  for (let n = 1; n <= count; n++) out.push(`${prefix}${n}`)
  return out
}

export const TOKENS: readonly string[] = seededTokens()

/** One seeded token, uniformly at random (the hit path once the cache is warm). */
export function randomToken(): string {
  return TOKENS[Math.floor(Math.random() * TOKENS.length)] as string
}

/** A token that was never issued: a miss, a Postgres read, then a short negative cache entry. */
export function unknownToken(distinct = 0): string {
  if (distinct > 0) return `k6-unknown-${Math.floor(Math.random() * distinct)}`
  return `k6-unknown-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`
}

/** Threshold defaults, overridable per run: P99_MS (ms) and ERROR_RATE (0..1). */
export const P99_MS = envNumber('P99_MS', 25)
export const ERROR_RATE = envNumber('ERROR_RATE', 0.001)
