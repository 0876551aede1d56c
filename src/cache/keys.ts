import { hashMember, hashTag, memberTag, uuidTag } from './compact-ids.js'

/**
 * The key scheme. Every key carries the token's SHA-256 (or a session/user id), never a token, and a hash tag `{…}`
 * so that each script touches the keys of one tag only, hence one Redis Cluster slot:
 *   <p>e:{<h>}         the cached answer for a token (codec.ts)      ┐ slot of the token hash
 *   <p>t:tok:{<h>}     the token's tombstone                         ┘
 *   <p>s:{<s>}         session id → the token's 12 bytes              ┐ slot of the session id
 *   <p>t:sid:{<s>}     the session's tombstone                       ┘
 *   <p>u:{<u>}         a user's tokens (12 bytes each), scored by     ┐ slot of the user id
 *                      when each entry expires (trimmed on fills)    │
 *   <p>t:uid:{<u>}     the user's tombstone                          ┘
 *   <p>invalidations   pub/sub channel: `<kind>:<id>` for every invalidation (epochs, L1 tiers), with the full token
 *                      hash or UUID as the caller gave it (tok:<64 hex>, sid:<uuid>, uid:<uuid>)
 * While a tombstone lives, no cache fill for that token, session or user may leave an entry behind (scripts.ts says
 * how, without a cross-slot command or an order between slots). The session and user indexes serve one case: an
 * invalidation by session or user id while Postgres, the source of an invalidation's token hashes, cannot be reached.
 *
 * Tags are compact (compact-ids.ts), because every byte of a key's name and of an index is paid for every cached
 * session (docs/capacity.md has the measurements):
 *   <h>       base64url of the first 96 bits of the token's SHA-256 (16 characters); the indexes hold those 12 bytes.
 *             A tag shared by two tokens only ever costs misses: a value is sealed to the full hash (codec.ts), so a
 *             token reading another's value gets a miss, and an invalidation that drops a shared key drops whatever
 *             is there and tombstones it (more misses, never a survivor). The chance that any two of n live tokens
 *             share one is n²/2^97 (10^8 tokens: ~6·10^-14), and making a token share a given one's takes 2^96 hashes
 *             and knowing its hash. 96 bits rather than 128: 12 bytes in the session index fit Redis's 32-byte
 *             allocation class where 16 take a 48-byte one, and the entry key is 6 characters shorter.
 *   <s>, <u>  base64url of the UUID's 16 bytes (22 characters), whatever case it was written in. Never truncated: two
 *             sessions sharing an index would hide one from an invalidation.
 * Callers pass the 64-hex token hash and UUID strings as everywhere else; only this module and compact-ids.ts know the
 * tags. A token found in an index (DROP_OWNER returns the 12 bytes it holds) names its keys through entryOfMember and
 * tokenTombstoneOfMember. With the default prefix `ssc:` the three keys a cached session keeps are 24 (`e:`) and 30
 * (`s:`, `u:`) bytes long: names up to 30 bytes stay in Redis's 32-byte allocation class, a 31-byte one takes 48.
 */
export function keyScheme(prefix: string) {
  const entryKey = (tag: string) => `${prefix}e:{${tag}}`
  const tokenTombstoneKey = (tag: string) => `${prefix}t:tok:{${tag}}`
  return {
    prefix,
    entry: (tokenHash: string) => entryKey(hashTag(tokenHash)),
    tokenTombstone: (tokenHash: string) => tokenTombstoneKey(hashTag(tokenHash)),
    /** What the session and user indexes hold for a token: 12 bytes (throws if tokenHash is not 64 hex digits). */
    indexMember: (tokenHash: string) => hashMember(tokenHash),
    /** The entry of a token found in an index (an indexMember). */
    entryOfMember: (member: Buffer) => entryKey(memberTag(member)),
    tokenTombstoneOfMember: (member: Buffer) => tokenTombstoneKey(memberTag(member)),
    sessionIndex: (sessionId: string) => `${prefix}s:{${uuidTag(sessionId)}}`,
    sessionTombstone: (sessionId: string) => `${prefix}t:sid:{${uuidTag(sessionId)}}`,
    userIndex: (userId: string) => `${prefix}u:{${uuidTag(userId)}}`,
    userTombstone: (userId: string) => `${prefix}t:uid:{${uuidTag(userId)}}`,
    /** Pub/sub channel on which every invalidation is announced, for every instance. */
    invalidationChannel: `${prefix}invalidations`,
  }
}

export type KeyScheme = ReturnType<typeof keyScheme>
