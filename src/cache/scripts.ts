/**
 * Server-side scripts, so that each cache write is atomic (no key lives without a TTL, no index points nowhere) and
 * costs one round trip. Loaded with ioredis defineCommand (EVALSHA, falling back to EVAL).
 * They build index and tombstone names from the prefix like keys.ts does; Redis Cluster support will need hash tags.
 * Times come from the server's clock (TIME), so instances with skewed clocks agree on which index members expired.
 */

/**
 * KEYS: entry, token tombstone [, session tombstone, user tombstone, user index, session index]
 * ARGV: value, ttlMs [, tokenHash]
 * Returns 1 when written, 0 when a tombstone forbade it.
 * The user index is a sorted set scored by each entry's expiry: members whose entries have expired are dropped here,
 * so a user with steady logins keeps an index of their live sessions only.
 */
export const FILL = `
local last = #KEYS > 2 and 4 or 2
if redis.call('EXISTS', unpack(KEYS, 2, last)) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if #KEYS > 2 then
  local ttl = tonumber(ARGV[2])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  redis.call('ZADD', KEYS[5], now + ttl, ARGV[3])
  if redis.call('PTTL', KEYS[5]) < ttl then redis.call('PEXPIRE', KEYS[5], ttl) end
  redis.call('SET', KEYS[6], ARGV[3], 'PX', ttl)
end
return 1
`

/**
 * KEYS: entry, user index, session index.  ARGV: ttlMs, tokenHash.
 * Extends a cached entry and its indexes together (an index must outlive its entries); a no-op if the entry is gone.
 */
export const EXTEND = `
local ttl = tonumber(ARGV[1])
if redis.call('PEXPIRE', KEYS[1], ttl) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], 'GT', now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
`

/**
 * ARGV: prefix, tombstoneTtlMs, channel, then pairs of kind ('tok' | 'sid' | 'uid') and id (a token hash, session id
 * or user id).
 * For each target: removes its cached entries (a token's own; a session's or user's through the indexes) with their
 * index entries, leaves tombstones for the target and for each token hash it touched, and publishes `<kind>:<id>` on
 * the channel for every instance (L1 tiers, single-flight epochs), all in one atomic step. Callers also pass the token
 * hashes Postgres knows for a session or user, so an evicted index cannot hide an entry. Returns entries removed.
 */
export const INVALIDATE = `
local p, ttl, channel = ARGV[1], ARGV[2], ARGV[3]
local removed = 0
local function drop(h)
  local key = p .. 'e:' .. h
  local v = redis.call('GET', key)
  if v then
    removed = removed + 1
    local ok, d = pcall(cjson.decode, v)
    if ok and type(d) == 'table' and type(d.sid) == 'string' and type(d.uid) == 'string' then
      redis.call('DEL', p .. 'sid:' .. d.sid)
      redis.call('ZREM', p .. 'ui:' .. d.uid, h)
    end
    redis.call('DEL', key)
  end
  redis.call('SET', p .. 't:tok:' .. h, '1', 'PX', ttl)
end
for i = 4, #ARGV - 1, 2 do
  local kind, id = ARGV[i], ARGV[i + 1]
  if kind == 'tok' then
    drop(id)
  elseif kind == 'sid' then
    local h = redis.call('GET', p .. 'sid:' .. id)
    if h then drop(h) end
    redis.call('DEL', p .. 'sid:' .. id)
    redis.call('SET', p .. 't:sid:' .. id, '1', 'PX', ttl)
  elseif kind == 'uid' then
    for _, h in ipairs(redis.call('ZRANGE', p .. 'ui:' .. id, 0, -1)) do drop(h) end
    redis.call('DEL', p .. 'ui:' .. id)
    redis.call('SET', p .. 't:uid:' .. id, '1', 'PX', ttl)
  end
  redis.call('PUBLISH', channel, kind .. ':' .. id)
end
return removed
`
