import type { SessionRecord } from './session.js'

/** Where cache warming reads from: the truth (Postgres), never the cache. Every method throws when it is unreachable. */
export interface WarmSource {
  /**
   * The ids of the `limit` most recently active live sessions (not revoked, not expired, user neither banned nor
   * deleted), most recent first; a session never active comes last.
   */
  recentlyActive(limit: number): Promise<string[]>
  /** The records of these sessions, read now, with each token's hash: what a validation's miss would have read. */
  records(sessionIds: string[]): Promise<Array<{ tokenHash: string; record: SessionRecord }>>
}
