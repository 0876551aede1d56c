import { hashTag } from './compact-ids.js'

/**
 * The key scheme. Every key carries the token's SHA-256, never a token, and a hash tag `{…}` so that each script
 * touches the keys of one tag only, hence one Redis Cluster slot:
 *   <p>e:{<h>}         the cached answer for a token (codec.ts)      ┐ slot of the token hash
 *   <p>t:tok:{<h>}     the token's tombstone                         ┘
 *   <p>invalidations   pub/sub channel: `<kind>:<id>` for every invalidation (epochs, L1 tiers), with the full token
 *                      hash or UUID as the caller gave it (tok:<64 hex>, sid:<uuid>, uid:<uuid>)
 * While a tombstone lives, no cache fill for that token may land (scripts.ts). There is no key per session or user:
 * invalidation by session or user id gets the token hashes from Postgres (service/invalidator.ts), so a cached
 * session is one key (docs/capacity.md has the measurements).
 *
 * Tags are compact (compact-ids.ts), because every byte of a key's name is paid for every cached session:
 *   <h>       base64url of the first 96 bits of the token's SHA-256 (16 characters). A tag shared by two tokens only
 *             ever costs misses: a value is sealed to the full hash (codec.ts), so a token reading another's value
 *             gets a miss, and an invalidation that drops a shared key drops whatever is there and tombstones it (more
 *             misses, never a survivor). The chance that any two of n live tokens share one is n²/2^97 (10^8 tokens:
 *             ~6·10^-14), and making a token share a given one's takes 2^96 hashes and knowing its hash.
 * Callers pass the 64-hex token hash as everywhere else; only this module and compact-ids.ts know the tags. With the
 * default prefix `ssc:` an entry's name is 24 bytes: names up to 30 bytes stay in Redis's 32-byte allocation class,
 * a 31-byte one takes 48.
 */
export function keyScheme(prefix: string) {
  return {
    prefix,
    entry: (tokenHash: string) => `${prefix}e:{${hashTag(tokenHash)}}`,
    tokenTombstone: (tokenHash: string) => `${prefix}t:tok:{${hashTag(tokenHash)}}`,
    /** Pub/sub channel on which every invalidation is announced, for every instance. */
    invalidationChannel: `${prefix}invalidations`,
  }
}

export type KeyScheme = ReturnType<typeof keyScheme>
