import type { RedisClient } from './client.js'
import { withConnection, type RedisPool } from './pool.js'

export interface RedisProbe {
  connected: boolean
  version: string | null
  uptimeSeconds: number | null
  usedMemoryBytes: number | null
  maxmemoryBytes: number | null
  maxmemoryPolicy: string | null
  totalKeys: number | null
  warnings: string[]
  error?: string
}

export interface RedisTimings {
  pingMs: number | null
  getMs: number | null
  setMs: number | null
}

export const RECOMMENDED_EVICTION =
  'set maxmemory to a limit (e.g. 256mb) and maxmemory-policy to allkeys-lru, so a full cache evicts old sessions instead of refusing fills'

/** Parses the `key:value` lines of INFO. */
export function parseInfo(info: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of info.split('\r\n')) {
    const at = line.indexOf(':')
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1))
  }
  return fields
}

/** Reads what an operator needs from INFO (not CONFIG GET, which a least-privilege ACL user may not run). */
export function summariseInfo(info: string): Omit<RedisProbe, 'connected' | 'error'> {
  const f = parseInfo(info)
  const num = (key: string) => (f.has(key) ? Number(f.get(key)) : null)
  let totalKeys = 0
  for (const [key, value] of f) {
    if (/^db\d+$/.test(key)) totalKeys += Number(/keys=(\d+)/.exec(value)?.[1] ?? 0)
  }
  const maxmemoryBytes = num('maxmemory')
  const maxmemoryPolicy = f.get('maxmemory_policy') ?? null
  const warnings: string[] = []
  if (maxmemoryBytes === 0) warnings.push(`maxmemory is unlimited: Redis can grow until the host runs out; ${RECOMMENDED_EVICTION}`)
  if (maxmemoryPolicy === 'noeviction') warnings.push(`maxmemory-policy is noeviction: a full cache refuses fills; ${RECOMMENDED_EVICTION}`)
  return {
    version: f.get('redis_version') ?? null,
    uptimeSeconds: num('uptime_in_seconds'),
    usedMemoryBytes: num('used_memory'),
    maxmemoryBytes,
    maxmemoryPolicy,
    totalKeys,
    warnings,
  }
}

/** The INFO figures the metrics poller exports (counters as Redis reports them, since its start). */
export interface RedisInfoFigures {
  usedMemoryBytes: number | null
  maxmemoryBytes: number | null
  connectedClients: number | null
  evictedKeys: number | null
  expiredKeys: number | null
}

export function infoFigures(info: string): RedisInfoFigures {
  const f = parseInfo(info)
  const num = (key: string) => {
    const value = Number(f.get(key))
    return f.has(key) && Number.isFinite(value) ? value : null
  }
  return {
    usedMemoryBytes: num('used_memory'),
    maxmemoryBytes: num('maxmemory'),
    connectedClients: num('connected_clients'),
    evictedKeys: num('evicted_keys'),
    expiredKeys: num('expired_keys'),
  }
}

const infoOp = (client: RedisClient) => client.info()

/** INFO through the pool (not the breaker: a poll must neither be skipped by it nor count towards opening it). */
export function readInfo(pool: RedisPool): Promise<string> {
  return withConnection(pool, infoOp)
}

const pingOp = (client: RedisClient) => client.ping()
const getOp = (client: RedisClient, key: string) => client.get(key)
const setOp = (client: RedisClient, key: string) => client.set(key, '1', 'PX', 10_000)

async function timed<T>(work: Promise<T>): Promise<number> {
  const started = performance.now()
  await work
  return Math.round((performance.now() - started) * 1000) / 1000
}

/**
 * One look at Redis through the pool, bypassing the breaker (a health check must see Redis itself, and must not
 * count towards opening the breaker). Never throws: failures are reported.
 */
export async function probeRedis(pool: RedisPool, healthKey: string): Promise<RedisProbe & RedisTimings> {
  try {
    const pingMs = await timed(withConnection(pool, pingOp))
    const setMs = await timed(withConnection(pool, setOp, healthKey))
    const getMs = await timed(withConnection(pool, getOp, healthKey))
    const info = await withConnection(pool, infoOp)
    return { connected: true, ...summariseInfo(info), pingMs, getMs, setMs }
  } catch (err) {
    return {
      connected: false,
      version: null,
      uptimeSeconds: null,
      usedMemoryBytes: null,
      maxmemoryBytes: null,
      maxmemoryPolicy: null,
      totalKeys: null,
      warnings: [],
      error: (err as Error).message,
      pingMs: null,
      getMs: null,
      setMs: null,
    }
  }
}
