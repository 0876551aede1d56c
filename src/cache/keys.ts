/**
 * The key scheme. Every key carries the token's SHA-256 (or a session/user id), never a token, and a hash tag `{…}`
 * so that each script touches the keys of one tag only, hence one Redis Cluster slot:
 *   <p>e:{<hash>}        the cached answer for a token          ┐ slot of the token hash
 *   <p>t:tok:{<hash>}    the token's tombstone                  ┘
 *   <p>sid:{<id>}        session id → token hash                ┐ slot of the session id
 *   <p>t:sid:{<id>}      the session's tombstone                ┘
 *   <p>ui:{<id>}         a user's token hashes, scored by when  ┐ slot of the user id
 *                        each entry expires (trimmed on fills)  │
 *   <p>t:uid:{<id>}      the user's tombstone                   ┘
 *   <p>invalidations     pub/sub channel: `<kind>:<id>` for every invalidation (epochs, L1 tiers)
 * While a tombstone lives, no cache fill for that token, session or user may land. The order in which fills and
 * invalidations visit the slots is what makes that hold without a cross-slot command: see scripts.ts.
 */
export function keyScheme(prefix: string) {
  return {
    prefix,
    entry: (tokenHash: string) => `${prefix}e:{${tokenHash}}`,
    tokenTombstone: (tokenHash: string) => `${prefix}t:tok:{${tokenHash}}`,
    sessionIndex: (sessionId: string) => `${prefix}sid:{${sessionId}}`,
    sessionTombstone: (sessionId: string) => `${prefix}t:sid:{${sessionId}}`,
    userIndex: (userId: string) => `${prefix}ui:{${userId}}`,
    userTombstone: (userId: string) => `${prefix}t:uid:{${userId}}`,
    /** Pub/sub channel on which every invalidation is announced, for every instance. */
    invalidationChannel: `${prefix}invalidations`,
  }
}

export type KeyScheme = ReturnType<typeof keyScheme>
