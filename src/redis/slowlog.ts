import type { RedisClient } from './client.js'
import { withConnection, type RedisPool } from './pool.js'

/** One SLOWLOG entry, reduced to what may leave the process: the command's name and its duration, never arguments. */
export interface SlowlogEntry {
  id: number
  timestampSeconds: number
  durationMicros: number
  command: string
}

const COMMAND_NAME = /^[a-z][a-z0-9_.|-]{0,31}$/

/** A command name fit for a label: lower-case, from Redis's closed set of names; anything else is "other". */
export function commandName(raw: unknown): string {
  const name = (Buffer.isBuffer(raw) ? raw.toString('latin1') : String(raw ?? '')).toLowerCase()
  return COMMAND_NAME.test(name) ? name : 'other'
}

/** Parses a SLOWLOG GET reply: [id, unix time, microseconds, [command, ...args], client, name] per entry. */
export function parseSlowlog(reply: unknown): SlowlogEntry[] {
  if (!Array.isArray(reply)) return []
  const entries: SlowlogEntry[] = []
  for (const raw of reply) {
    if (!Array.isArray(raw) || raw.length < 4) continue
    const [id, at, micros, args] = raw as [unknown, unknown, unknown, unknown]
    if (!Number.isFinite(Number(id)) || !Number.isFinite(Number(micros))) continue
    entries.push({
      id: Number(id),
      timestampSeconds: Number(at),
      durationMicros: Number(micros),
      // Only the first element is ever looked at: the arguments may hold keys, tokens' hashes or cached sessions.
      command: commandName(Array.isArray(args) ? args[0] : undefined),
    })
  }
  return entries
}

const slowlogOp = (client: RedisClient, count: number) => client.call('SLOWLOG', 'GET', count)

/** SLOWLOG GET through the pool (not the breaker), newest entry first. */
export async function readSlowlog(pool: RedisPool, count: number): Promise<SlowlogEntry[]> {
  return parseSlowlog(await withConnection(pool, slowlogOp, count))
}

/**
 * Remembers which entries were already reported, by id. Entries older than this process are not reported (another
 * instance, or an earlier run, already did), and a Redis restart or SLOWLOG RESET (ids going backwards) starts over.
 * `missed` counts entries that came and went between two polls (more than one batch of them).
 */
export function createSlowlogTracker(startedAtSeconds: number) {
  let lastId = -1
  return {
    fresh(entries: SlowlogEntry[]): { fresh: SlowlogEntry[]; missed: number } {
      if (entries.length === 0) return { fresh: [], missed: 0 }
      const newest = Math.max(...entries.map((e) => e.id))
      if (newest < lastId) lastId = -1
      const fresh = entries.filter((e) => e.id > lastId && e.timestampSeconds >= startedAtSeconds).sort((a, b) => a.id - b.id)
      const oldest = fresh[0]?.id
      const missed = lastId >= 0 && oldest !== undefined && oldest > lastId + 1 ? oldest - lastId - 1 : 0
      lastId = Math.max(lastId, newest)
      return { fresh, missed }
    },
  }
}
