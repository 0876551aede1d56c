/**
 * Server-side scripts: each touches the keys of one token (one hash tag, so one Redis Cluster slot), declared in KEYS,
 * and costs one round trip; loaded with ioredis defineCommand (EVALSHA, falling back to EVAL). Every key is written
 * with its TTL in the same script.
 *
 * Why a racing fill can never write a revoked session back, with one script per fill and no cross-slot command:
 *   fill of token h:            FILL in slot h: refused if h's tombstone exists, else the entry is written.
 *   invalidation of anything:   Postgres names the token hashes (the revoke's or lookup's rows, or an outbox row's
 *                               hashes, resolved again when it is applied), then DROP_TOKEN in slot h for each: delete
 *                               the entry, tombstone h.
 *   A fill carries an answer read from Postgres before the invalidation's rows were (else it would not be valid), so
 *   its token is among them. A FILL that lands before DROP_TOKEN(h) is deleted by it; one after it meets h's tombstone.
 *   Tombstones outlive any fill's deadline (half their life, from the read), so "after" is covered. No index is kept:
 *   the session and user ids of an entry are inside its sealed value only (codec.ts), and nothing in Redis maps them
 *   to tokens (docs/architecture.md, "Fills and invalidation").
 */

/** KEYS: entry, token tombstone.  ARGV: value, ttlMs.  Returns 1 when written, 0 when the tombstone forbade it. */
export const FILL = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

/** KEYS: entry.  ARGV: ttlMs.  Extends a cached entry; a no-op (0) when it is gone. */
export const EXTEND = `
return redis.call('PEXPIRE', KEYS[1], ARGV[1])
`

/**
 * KEYS: entry, token tombstone.  ARGV: tombstoneTtlMs, channel, message ('' for none).
 * Deletes a token's entry and tombstones it (announcing it when asked). Returns 1 when an entry was removed.
 */
export const DROP_TOKEN = `
local removed = redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed
`
