import type CircuitBreaker from 'opossum'
import type { Redis } from 'ioredis'
import type { FillOutcome, SessionCache } from '../domain/ports.js'
import type { InvalidationTarget, SessionAnswer } from '../domain/session.js'
import type { AnswerCodec } from './codec.js'
import type { KeyScheme } from './keys.js'
import { EXTEND, FILL, INVALIDATE } from './scripts.js'

interface ScriptedClient extends Redis {
  sscFill(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<number>
  sscExtend(entry: string, userIndex: string, sessionIndex: string, ttlMs: number, tokenHash: string): Promise<number>
  sscInvalidate(...args: (string | number)[]): Promise<number>
}

/** Registers this cache's scripts on a new connection (the pool calls it for each one it opens). */
export function defineCacheScripts(client: Redis): void {
  client.defineCommand('sscFill', { lua: FILL })
  client.defineCommand('sscExtend', { numberOfKeys: 3, lua: EXTEND })
  client.defineCommand('sscInvalidate', { numberOfKeys: 0, lua: INVALIDATE })
}

/** A cache operation: a plain function of a connection and its arguments, so that calling one needs no closure. */
export type CacheOp = (client: Redis, ...args: never[]) => Promise<unknown>
export type GuardedRunner = CircuitBreaker<[CacheOp, ...unknown[]], unknown>

const getOp = (client: Redis, key: string) => client.get(key)
const fillOp = (client: Redis, numKeys: number, ...rest: (string | number)[]) =>
  (client as ScriptedClient).sscFill(numKeys, ...rest)
const extendOp = (client: Redis, entry: string, userIndex: string, sessionIndex: string, ttlMs: number, tokenHash: string) =>
  (client as ScriptedClient).sscExtend(entry, userIndex, sessionIndex, ttlMs, tokenHash)
const invalidateOp = (client: Redis, ...args: (string | number)[]) => (client as ScriptedClient).sscInvalidate(...args)
/** Targets per script call: a user with thousands of sessions, or a bulk revocation, must not block Redis at once. */
const TARGETS_PER_CALL = 200

const KIND_CODE = { token: 'tok', session: 'sid', user: 'uid' } as const

/**
 * SessionCache over Redis. Every operation runs through the breaker (which runs it on a pooled connection); a hit is
 * one GET and one decryption (codec.ts), a fill or an invalidation is one script call.
 */
export function createRedisSessionCache(
  runner: GuardedRunner,
  keys: KeyScheme,
  tombstoneTtlMs: number,
  codec: AnswerCodec,
): SessionCache {
  const run = runner.fire.bind(runner) as (op: CacheOp, ...args: unknown[]) => Promise<unknown>

  return {
    async get(tokenHash) {
      const raw = (await run(getOp as CacheOp, keys.entry(tokenHash))) as string | null
      return raw === null ? null : codec.decode(tokenHash, raw)
    },

    async fill(tokenHash, answer: SessionAnswer, ttlMs): Promise<FillOutcome> {
      const value = codec.encode(tokenHash, answer)
      const ttl = Math.max(1, Math.floor(ttlMs))
      const written = answer.valid
        ? await run(
            fillOp as CacheOp,
            6,
            keys.entry(tokenHash),
            keys.tokenTombstone(tokenHash),
            keys.sessionTombstone(answer.entry.session.id),
            keys.userTombstone(answer.entry.session.userId),
            keys.userIndex(answer.entry.session.userId),
            keys.sessionIndex(answer.entry.session.id),
            value,
            ttl,
            tokenHash,
          )
        : await run(fillOp as CacheOp, 2, keys.entry(tokenHash), keys.tokenTombstone(tokenHash), value, ttl)
      return written === 1 ? 'written' : 'tombstoned'
    },

    async extend(tokenHash, answer, ttlMs) {
      await run(
        extendOp as CacheOp,
        keys.entry(tokenHash),
        keys.userIndex(answer.entry.session.userId),
        keys.sessionIndex(answer.entry.session.id),
        Math.max(1, Math.floor(ttlMs)),
        tokenHash,
      )
    },

    async invalidate(targets: InvalidationTarget[]) {
      let removed = 0
      for (let at = 0; at < targets.length; at += TARGETS_PER_CALL) {
        const args: (string | number)[] = [keys.prefix, tombstoneTtlMs, keys.invalidationChannel]
        for (const target of targets.slice(at, at + TARGETS_PER_CALL)) {
          const id = target.kind === 'token' ? target.tokenHash : target.kind === 'session' ? target.sessionId : target.userId
          args.push(KIND_CODE[target.kind], id)
        }
        removed += (await run(invalidateOp as CacheOp, ...args)) as number
      }
      return removed
    },

    async close() {
      // The pool and breaker belong to the composition root, which closes them.
    },
  }
}
