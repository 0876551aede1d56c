import type CircuitBreaker from 'opossum'
import type { FillOutcome, SessionCache } from '../domain/ports.js'
import type { InvalidationTarget, SessionAnswer } from '../domain/session.js'
import type { RedisClient } from '../redis/client.js'
import type { AnswerCodec } from './codec.js'
import type { KeyScheme } from './keys.js'
import { DROP_TOKEN, EXTEND, FILL } from './scripts.js'

interface Scripted {
  sscFill(entry: string, tombstone: string, value: Buffer, ttlMs: number): Promise<number>
  sscExtend(entry: string, ttlMs: number): Promise<number>
  sscDropToken(entry: string, tombstone: string, ttlMs: number, channel: string, message: string): Promise<number>
}

/** Registers this cache's scripts on a new connection (the pool calls it for each one it opens). */
export function defineCacheScripts(client: RedisClient): void {
  client.defineCommand('sscFill', { numberOfKeys: 2, lua: FILL })
  client.defineCommand('sscExtend', { numberOfKeys: 1, lua: EXTEND })
  client.defineCommand('sscDropToken', { numberOfKeys: 2, lua: DROP_TOKEN })
}

/** A cache operation: a plain function of a connection and its arguments, so that calling one needs no closure. */
export type CacheOp = ((client: RedisClient, ...args: never[]) => Promise<unknown>) & { exclusive?: boolean }
export type GuardedRunner = CircuitBreaker<[CacheOp, ...unknown[]], unknown> & {
  /** As fire, batched with the other calls of the same event-loop turn (guarded-runner.ts): the hot path's read. */
  fireInTurn(op: CacheOp, ...args: unknown[]): Promise<unknown>
}

/** After an invalidation: how many replicas must confirm it, and for how long to wait (0: do not). */
export interface ReplicaAck {
  replicas(): number
  timeoutMs: number
}

const s = (client: RedisClient) => client as unknown as Scripted

/** Values are raw bytes (codec.ts): read as a Buffer, never decoded as text. */
const getOp = (client: RedisClient, key: string) => client.getBuffer(key)
const fillOp = (client: RedisClient, entry: string, tombstone: string, value: Buffer, ttl: number) => s(client).sscFill(entry, tombstone, value, ttl)
const extendOp = (client: RedisClient, entry: string, ttl: number) => s(client).sscExtend(entry, ttl)

const KIND_CODE = { token: 'tok', session: 'sid', user: 'uid' } as const
/** Targets per operation: a user with thousands of sessions, or a bulk revocation, must not hold Redis at once. */
const TARGETS_PER_CALL = 200

/** Thrown when fewer replicas than asked confirmed an invalidation: it may not survive a failover, so it is retried. */
export class ReplicaAckShortfall extends Error {
  override name = 'ReplicaAckShortfall'
}

/**
 * SessionCache over Redis (one node, Sentinel or Cluster alike). Every operation runs through the breaker (which runs
 * it on a pooled connection); a hit is one GET and one decryption (codec.ts), a fill one script (scripts.ts).
 */
export function createRedisSessionCache(
  runner: GuardedRunner,
  keys: KeyScheme,
  tombstoneTtlMs: number,
  codec: AnswerCodec,
  ack: ReplicaAck = { replicas: () => 0, timeoutMs: 0 },
): SessionCache {
  const run = runner.fire.bind(runner) as (op: CacheOp, ...args: unknown[]) => Promise<unknown>
  const runInTurn = runner.fireInTurn
  const channel = keys.invalidationChannel

  /**
   * One chunk of an invalidation on one connection held for it: every token dropped and tombstoned, every session and
   * user announced (the cache holds nothing under their ids: their tokens come from Postgres, as token targets of
   * the same or a later call), then WAIT for the replicas on that same connection (it counts that connection's
   * writes). Each token is announced with its full hash (L1 tiers key answers by it).
   */
  const invalidateOp: CacheOp = async (client: RedisClient, targets: InvalidationTarget[]) => {
    const tokens = new Set<string>()
    const writes: Promise<unknown>[] = []
    for (const target of targets) {
      if (target.kind === 'token') {
        const { tokenHash } = target
        if (tokens.has(tokenHash)) continue
        tokens.add(tokenHash)
        writes.push(s(client).sscDropToken(keys.entry(tokenHash), keys.tokenTombstone(tokenHash), tombstoneTtlMs, channel, `tok:${tokenHash}`))
      } else {
        const id = target.kind === 'session' ? target.sessionId : target.userId
        writes.push(client.publish(channel, `${KIND_CODE[target.kind]}:${id}`).then(() => 0))
      }
    }
    const removed = (await Promise.all(writes)) as number[]
    const replicas = ack.replicas()
    if (replicas > 0 && 'wait' in client) {
      const confirmed = await (client as { wait(n: number, ms: number): Promise<number> }).wait(replicas, ack.timeoutMs)
      if (confirmed < replicas) throw new ReplicaAckShortfall(`${confirmed} of ${replicas} replicas confirmed within ${ack.timeoutMs} ms`)
    }
    return removed.reduce((sum, n) => sum + n, 0)
  }
  invalidateOp.exclusive = true

  return {
    async get(tokenHash) {
      const raw = (await runInTurn(getOp as CacheOp, keys.entry(tokenHash))) as Buffer | null
      return raw === null ? null : codec.decode(tokenHash, raw)
    },

    async fill(tokenHash, answer: SessionAnswer, ttlMs): Promise<FillOutcome> {
      const ttl = Math.max(1, Math.floor(ttlMs))
      const written = await run(fillOp as CacheOp, keys.entry(tokenHash), keys.tokenTombstone(tokenHash), codec.encode(tokenHash, answer), ttl)
      return written === 1 ? 'written' : 'tombstoned'
    },

    async extend(tokenHash, _answer, ttlMs) {
      await run(extendOp as CacheOp, keys.entry(tokenHash), Math.max(1, Math.floor(ttlMs)))
    },

    async invalidate(targets: InvalidationTarget[]) {
      let removed = 0
      for (let at = 0; at < targets.length; at += TARGETS_PER_CALL) {
        removed += (await run(invalidateOp, targets.slice(at, at + TARGETS_PER_CALL))) as number
      }
      return removed
    },

    async close() {
      // The pool and breaker belong to the composition root, which closes them.
    },
  }
}
