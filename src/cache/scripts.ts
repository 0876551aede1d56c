/**
 * Server-side scripts: each touches the keys of one hash tag (one Redis Cluster slot), declared in KEYS, and costs one
 * round trip; loaded with ioredis defineCommand (EVALSHA, falling back to EVAL). Every key is written with its TTL in
 * the same script. Times come from the server's clock (TIME), so instances with skewed clocks agree.
 *
 * Why a racing fill can never write a revoked session back, with no cross-slot command and no order between slots:
 *   fill of token h (session s, user u): FILL in slot h (refused if h's tombstone exists) and CLAIM in slots s and u
 *     (refused if that tombstone exists, else h joins the index), all three at once: one round trip. If FILL wrote and
 *     a CLAIM was refused, DROP_TOKEN(h) follows.
 *   invalidation of a session s or user u: DROP_OWNER in its slot (tombstone it, take its index) and DROP_TOKEN on each
 *     h found; then DROP_TOKEN on each h Postgres names (the revoke's or lookup's rows, an outbox row's hashes).
 *   With Postgres answering (the 200): the fill's answer was read while the session existed, so Postgres names h; a
 *     FILL before DROP_TOKEN(h) is deleted by it, one after it meets h's tombstone. The indexes are not needed for it.
 *   With Postgres unreachable (a 503, which drops what the cache can find first): the indexes find what was cached. A
 *     fill in flight whose CLAIM came after DROP_OWNER is refused there, and its DROP_TOKEN removes the entry it wrote;
 *     one whose CLAIM came before put h in the index DROP_OWNER took, so DROP_TOKEN(h) runs as above.
 *   Tombstones outlive any fill's deadline (half their life, from the read), so "after" is covered.
 */

/**
 * KEYS: tombstone (t:sid or t:uid), index (s or u).  ARGV: 'sid' | 'ui', member (the token's 12 bytes: keys.ts), ttlMs.
 * Returns 1 when the token joined the index, 0 when the tombstone forbade it. The user index is a sorted set scored by
 * each entry's expiry: members whose entries have expired are dropped here, so it holds live sessions only.
 */
export const CLAIM = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[3])
if ARGV[1] == 'sid' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
`

/** KEYS: entry, token tombstone.  ARGV: value, ttlMs.  Returns 1 when written, 0 when the tombstone forbade it. */
export const FILL = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

/**
 * KEYS: index (s or u).  ARGV: 'sid' | 'ui', ttlMs, member (the token's 12 bytes).
 * Sliding TTL: keeps an index at least as long as the entry it is extended with (run before the entry's EXTEND).
 */
export const EXTEND_INDEX = `
local ttl = tonumber(ARGV[2])
if ARGV[1] == 'ui' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[1], 'GT', now + ttl, ARGV[3])
end
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`

/** KEYS: entry.  ARGV: ttlMs.  Extends a cached entry; a no-op (0) when it is gone. */
export const EXTEND = `
return redis.call('PEXPIRE', KEYS[1], ARGV[1])
`

/**
 * KEYS: tombstone (t:sid or t:uid), index (s or u).  ARGV: 'sid' | 'ui', tombstoneTtlMs, channel, message.
 * Step 1 of invalidating a session or a user: tombstones it, takes its index (every token claimed so far), and
 * announces it to every instance. Returns the index's members: 12 bytes each, to be read as Buffers (keys.ts names
 * their entries and tombstones).
 */
export const DROP_OWNER = `
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
local hashes
if ARGV[1] == 'sid' then
  local h = redis.call('GET', KEYS[2])
  hashes = h and { h } or {}
else
  hashes = redis.call('ZRANGE', KEYS[2], 0, -1)
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return hashes
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
