/**
 * Server-side scripts, so that each cache write is atomic (no key lives without a TTL, no index points nowhere) and
 * costs one round trip. Loaded with ioredis defineCommand (EVALSHA, falling back to EVAL).
 * They build index and tombstone names from the prefix like keys.ts does; Redis Cluster support will need hash tags.
 */

/**
 * KEYS: entry, token tombstone [, session tombstone, user tombstone, user index, session index]
 * ARGV: value, ttlMs [, tokenHash]
 * Returns 1 when written, 0 when a tombstone forbade it.
 */
export const FILL = `
local last = #KEYS > 2 and 4 or 2
if redis.call('EXISTS', unpack(KEYS, 2, last)) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if #KEYS > 2 then
  local ttl = tonumber(ARGV[2])
  redis.call('SADD', KEYS[5], ARGV[3])
  if redis.call('PTTL', KEYS[5]) < ttl then redis.call('PEXPIRE', KEYS[5], ttl) end
  redis.call('SET', KEYS[6], ARGV[3], 'PX', ttl)
end
return 1
`

/**
 * KEYS: entry, user index, session index.  ARGV: ttlMs.
 * Extends a cached entry and its indexes together (an index must outlive its entries); a no-op if the entry is gone.
 */
export const EXTEND = `
local ttl = tonumber(ARGV[1])
if redis.call('PEXPIRE', KEYS[1], ttl) == 0 then return 0 end
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
`

/**
 * ARGV: prefix, tombstoneTtlMs, kind ('tok' | 'sid' | 'uid'), id (a token hash, session id or user id), channel.
 * Removes every cached entry of the target with its index entries, leaves tombstones for the target and for each
 * token hash it found, and publishes `<kind>:<id>` on the channel for every instance's L1 tier, in the same atomic
 * step. Returns the number of entries removed.
 */
export const INVALIDATE = `
local p, ttl, kind, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local hashes = {}
if kind == 'tok' then
  hashes = { id }
elseif kind == 'sid' then
  local h = redis.call('GET', p .. 'sid:' .. id)
  if h then hashes = { h } end
else
  hashes = redis.call('SMEMBERS', p .. 'u:' .. id)
end
local removed = 0
for _, h in ipairs(hashes) do
  local v = redis.call('GET', p .. 'e:' .. h)
  if v then
    removed = removed + 1
    local ok, d = pcall(cjson.decode, v)
    if ok and type(d) == 'table' and type(d.sid) == 'string' and type(d.uid) == 'string' then
      redis.call('DEL', p .. 'sid:' .. d.sid)
      redis.call('SREM', p .. 'u:' .. d.uid, h)
    end
    redis.call('DEL', p .. 'e:' .. h)
  end
  redis.call('SET', p .. 't:tok:' .. h, '1', 'PX', ttl)
end
if kind ~= 'tok' then redis.call('SET', p .. 't:' .. kind .. ':' .. id, '1', 'PX', ttl) end
if kind == 'sid' then redis.call('DEL', p .. 'sid:' .. id) end
if kind == 'uid' then redis.call('DEL', p .. 'u:' .. id) end
redis.call('PUBLISH', ARGV[5], kind .. ':' .. id)
return removed
`
