/**
 * The key scheme. Every key carries the token's SHA-256 (or a session/user id), never a token.
 *   <p>e:<hash>        the cached answer for a token
 *   <p>sid:<id>        session id → token hash (invalidate by session id after the Studio deleted the row)
 *   <p>ui:<id>         a user's token hashes, scored by when each entry expires: invalidating a user costs that user's
 *                      live sessions, not a SCAN; every fill drops the members that have expired (bounded to live ones)
 *   <p>t:tok:<hash>    tombstones: while one lives, no cache fill for that token, session or user may land
 *   <p>t:sid:<id>
 *   <p>t:uid:<id>
 *   <p>invalidations  pub/sub channel: `<kind>:<id>` for every invalidation (keeps L1 tiers coherent)
 * The Lua scripts build the same names from the prefix (see scripts.ts); keep the two in step.
 */
export function keyScheme(prefix: string) {
  return {
    prefix,
    entry: (tokenHash: string) => `${prefix}e:${tokenHash}`,
    sessionIndex: (sessionId: string) => `${prefix}sid:${sessionId}`,
    userIndex: (userId: string) => `${prefix}ui:${userId}`,
    tokenTombstone: (tokenHash: string) => `${prefix}t:tok:${tokenHash}`,
    sessionTombstone: (sessionId: string) => `${prefix}t:sid:${sessionId}`,
    userTombstone: (userId: string) => `${prefix}t:uid:${userId}`,
    /** Pub/sub channel on which every invalidation is announced, for the instances' L1 tiers. */
    invalidationChannel: `${prefix}invalidations`,
  }
}

export type KeyScheme = ReturnType<typeof keyScheme>
