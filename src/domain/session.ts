/** Session and user as the HTTP contract shows them. Times are ISO-8601 UTC strings. */
export interface SessionView {
  id: string
  userId: string
  createdAt: string
  expiresAt: string
  lastActivityAt: string | null
}

export interface UserView {
  id: string
  email: string
  firstName: string | null
  lastName: string | null
  username: string | null
}

export type InvalidReason = 'not_found' | 'expired' | 'revoked' | 'user_banned' | 'user_deleted'
export type AnswerSource = 'l1' | 'redis' | 'postgres'

/** A valid session as cached: what the answer needs, plus its expiry as a number so a hit can check it cheaply. */
export interface ValidEntry {
  session: SessionView
  user: UserView
  expiresAtMs: number
  /** When Postgres was read for it: no copy of this answer may live past readAtMs + the cache TTL. */
  readAtMs: number
}

/** What the cache holds for a token hash, and what the validator answers before a source is attached. */
export type SessionAnswer = { valid: true; entry: ValidEntry } | { valid: false; reason: InvalidReason }

/** One row of the store's lookup: the session joined with its user, with every field a verdict needs. */
export interface SessionRecord {
  session: SessionView
  user: UserView
  revokedAt: Date | null
  userBannedUntil: Date | null
  userDeletedAt: Date | null
}

/** Who an invalidation is aimed at. A token is only ever known here by its hash. */
export type InvalidationTarget =
  | { kind: 'token'; tokenHash: string }
  | { kind: 'session'; sessionId: string }
  | { kind: 'user'; userId: string }
