import type CircuitBreaker from 'opossum'
import type { FillOutcome, SessionCache } from '../domain/ports.js'
import type { InvalidationTarget, SessionAnswer } from '../domain/session.js'
import type { RedisClient } from '../redis/client.js'
import type { AnswerCodec } from './codec.js'
import type { KeyScheme } from './keys.js'
import { CLAIM, DROP_OWNER, DROP_TOKEN, EXTEND, EXTEND_INDEX, FILL } from './scripts.js'

interface Scripted {
  sscClaim(tombstone: string, index: string, kind: 'sid' | 'ui', member: Buffer, ttlMs: number): Promise<number>
  sscFill(entry: string, tombstone: string, value: Buffer, ttlMs: number): Promise<number>
  sscExtendIndex(index: string, kind: 'sid' | 'ui', ttlMs: number, member: Buffer): Promise<number>
  sscExtend(entry: string, ttlMs: number): Promise<number>
  /** ioredis's Buffer variant of sscDropOwner: index members are bytes, not text. */
  sscDropOwnerBuffer(tombstone: string, index: string, kind: 'sid' | 'ui', ttlMs: number, channel: string, message: string): Promise<Buffer[]>
  sscDropToken(entry: string, tombstone: string, ttlMs: number, channel: string, message: string): Promise<number>
}

/** Registers this cache's scripts on a new connection (the pool calls it for each one it opens). */
export function defineCacheScripts(client: RedisClient): void {
  client.defineCommand('sscClaim', { numberOfKeys: 2, lua: CLAIM })
  client.defineCommand('sscFill', { numberOfKeys: 2, lua: FILL })
  client.defineCommand('sscExtendIndex', { numberOfKeys: 1, lua: EXTEND_INDEX })
  client.defineCommand('sscExtend', { numberOfKeys: 1, lua: EXTEND })
  client.defineCommand('sscDropOwner', { numberOfKeys: 2, lua: DROP_OWNER })
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
const extendIndexOp = (client: RedisClient, index: string, kind: 'sid' | 'ui', ttl: number, member: Buffer) =>
  s(client).sscExtendIndex(index, kind, ttl, member)
const extendOp = (client: RedisClient, entry: string, ttl: number) => s(client).sscExtend(entry, ttl)

/** The session's and user's index keys a valid answer's fill claims, and what it puts in them. */
interface Owners {
  sessionTombstone: string
  sessionIndex: string
  userTombstone: string
  userIndex: string
  member: Buffer
}

/**
 * A valid answer's fill as one breaker call on one connection, in one round trip: the entry and both index claims at
 * once (scripts.ts says why no order between them is needed). When a claim met an owner's tombstone, the entry it
 * wrote is dropped again (a second round trip, only then). Returns 1 when the entry stays, 0 when refused.
 */
async function fillValidOp(
  client: RedisClient,
  entry: string,
  tombstone: string,
  value: Buffer,
  ttl: number,
  owners: Owners,
  tombstoneTtlMs: number,
  channel: string,
  message: string,
): Promise<number> {
  const c = s(client)
  const [written, sessionClaim, userClaim] = await Promise.all([
    c.sscFill(entry, tombstone, value, ttl),
    c.sscClaim(owners.sessionTombstone, owners.sessionIndex, 'sid', owners.member, ttl),
    c.sscClaim(owners.userTombstone, owners.userIndex, 'ui', owners.member, ttl),
  ])
  if (written !== 1) return 0
  if (sessionClaim === 1 && userClaim === 1) return 1
  // The session or user was invalidated since this answer was read: the entry just written must not stay.
  await c.sscDropToken(entry, tombstone, tombstoneTtlMs, channel, message)
  return 0
}

const KIND_CODE = { token: 'tok', session: 'sid', user: 'uid' } as const
/** Targets per operation: a user with thousands of sessions, or a bulk revocation, must not hold Redis at once. */
const TARGETS_PER_CALL = 200

/** Thrown when fewer replicas than asked confirmed an invalidation: it may not survive a failover, so it is retried. */
export class ReplicaAckShortfall extends Error {
  override name = 'ReplicaAckShortfall'
}

/**
 * SessionCache over Redis (one node, Sentinel or Cluster alike). Every operation runs through the breaker (which runs
 * it on a pooled connection); a hit is one GET and one decryption (codec.ts); a fill is one breaker call and one round
 * trip (its three scripts sent at once). Fills and invalidations follow the per-slot protocol of scripts.ts.
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
   * One chunk of an invalidation on one connection held for it: owners first (tombstone, index), then every token
   * named or found, then WAIT for the replicas on that same connection (it counts that connection's writes).
   * A token named by the caller is dropped and announced with its full hash (L1 tiers key answers by it); a token found
   * in an index (its 12 bytes) is dropped unless a named one has the same entry key, and is covered by its owner's
   * announcement.
   */
  const invalidateOp: CacheOp = async (client: RedisClient, targets: InvalidationTarget[]) => {
    // By token hash for named tokens, by entry key for found ones (the two never look alike: keys carry the prefix).
    const drops = new Map<string, { entry: string; tombstone: string; message: string }>()
    const entries = new Set<string>()
    const owners: Promise<Buffer[]>[] = []
    for (const target of targets) {
      if (target.kind === 'token') {
        const { tokenHash } = target
        if (drops.has(tokenHash)) continue
        const entry = keys.entry(tokenHash)
        entries.add(entry)
        drops.set(tokenHash, { entry, tombstone: keys.tokenTombstone(tokenHash), message: `tok:${tokenHash}` })
      } else {
        const id = target.kind === 'session' ? target.sessionId : target.userId
        const [tombstone, index, kind] =
          target.kind === 'session'
            ? [keys.sessionTombstone(id), keys.sessionIndex(id), 'sid' as const]
            : [keys.userTombstone(id), keys.userIndex(id), 'ui' as const]
        owners.push(s(client).sscDropOwnerBuffer(tombstone, index, kind, tombstoneTtlMs, channel, `${KIND_CODE[target.kind]}:${id}`))
      }
    }
    for (const found of await Promise.all(owners)) {
      for (const member of found) {
        const entry = keys.entryOfMember(member)
        if (entries.has(entry)) continue
        entries.add(entry)
        drops.set(entry, { entry, tombstone: keys.tokenTombstoneOfMember(member), message: '' })
      }
    }
    const removed = await Promise.all(
      [...drops.values()].map(({ entry, tombstone, message }) => s(client).sscDropToken(entry, tombstone, tombstoneTtlMs, channel, message)),
    )
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
      const value = codec.encode(tokenHash, answer)
      const ttl = Math.max(1, Math.floor(ttlMs))
      const entry = keys.entry(tokenHash)
      const tombstone = keys.tokenTombstone(tokenHash)
      if (!answer.valid) {
        return (await run(fillOp as CacheOp, entry, tombstone, value, ttl)) === 1 ? 'written' : 'tombstoned'
      }
      const { id: sessionId, userId } = answer.entry.session
      const owners: Owners = {
        sessionTombstone: keys.sessionTombstone(sessionId),
        sessionIndex: keys.sessionIndex(sessionId),
        userTombstone: keys.userTombstone(userId),
        userIndex: keys.userIndex(userId),
        member: keys.indexMember(tokenHash),
      }
      const written = await run(fillValidOp as CacheOp, entry, tombstone, value, ttl, owners, tombstoneTtlMs, channel, `tok:${tokenHash}`)
      return written === 1 ? 'written' : 'tombstoned'
    },

    async extend(tokenHash, answer, ttlMs) {
      const ttl = Math.max(1, Math.floor(ttlMs))
      const { id: sessionId, userId } = answer.entry.session
      const member = keys.indexMember(tokenHash)
      // Indexes first: an index must outlive its entry.
      await Promise.all([
        run(extendIndexOp as CacheOp, keys.sessionIndex(sessionId), 'sid', ttl, member),
        run(extendIndexOp as CacheOp, keys.userIndex(userId), 'ui', ttl, member),
      ])
      await run(extendOp as CacheOp, keys.entry(tokenHash), ttl)
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
