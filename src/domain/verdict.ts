import type { SessionAnswer, SessionRecord } from './session.js'

/**
 * The rule of validity, in one place: a session is valid when its row exists, it is not revoked, not expired, and its
 * user is neither deleted nor banned. When several reasons hold, the most permanent one is reported.
 */
export function judge(record: SessionRecord | null, nowMs: number, readAtMs = nowMs): SessionAnswer {
  if (!record) return { valid: false, reason: 'not_found' }
  if (record.revokedAt) return { valid: false, reason: 'revoked' }
  const expiresAtMs = Date.parse(record.session.expiresAt)
  if (!(expiresAtMs > nowMs)) return { valid: false, reason: 'expired' }
  if (record.userDeletedAt) return { valid: false, reason: 'user_deleted' }
  if (record.userBannedUntil && record.userBannedUntil.getTime() > nowMs) return { valid: false, reason: 'user_banned' }
  return { valid: true, entry: { session: record.session, user: record.user, expiresAtMs, readAtMs } }
}

/** A cached answer is re-judged on every hit: a valid entry whose session has expired since is not valid. */
export function stillValid(answer: SessionAnswer, nowMs: number): SessionAnswer {
  if (answer.valid && !(answer.entry.expiresAtMs > nowMs)) return { valid: false, reason: 'expired' }
  return answer
}
