import type { InvalidReason, SessionAnswer } from '../domain/session.js'

/**
 * The cached value: compact JSON with short field names (memory per session matters), and never the token.
 * `sid` and `uid` are read by the invalidation script to clean the indexes.
 */
interface ValidWire {
  v: 1
  sid: string
  uid: string
  ca: string
  ea: string
  la: string | null
  x: number
  em: string
  fn: string | null
  ln: string | null
  un: string | null
}
interface InvalidWire {
  v: 1
  r: InvalidReason
}

const REASONS: ReadonlySet<string> = new Set<InvalidReason>(['not_found', 'expired', 'revoked', 'user_banned', 'user_deleted'])

export function encodeAnswer(answer: SessionAnswer): string {
  if (!answer.valid) return JSON.stringify({ v: 1, r: answer.reason } satisfies InvalidWire)
  const { session: s, user: u, expiresAtMs } = answer.entry
  const wire: ValidWire = {
    v: 1,
    sid: s.id,
    uid: s.userId,
    ca: s.createdAt,
    ea: s.expiresAt,
    la: s.lastActivityAt,
    x: expiresAtMs,
    em: u.email,
    fn: u.firstName,
    ln: u.lastName,
    un: u.username,
  }
  return JSON.stringify(wire)
}

const isStr = (v: unknown): v is string => typeof v === 'string'
const isStrOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string'

/** Anything that is not a value this version wrote decodes to null: the caller treats it as a miss. */
export function decodeAnswer(raw: string): SessionAnswer | null {
  let wire: Partial<ValidWire & InvalidWire>
  try {
    wire = JSON.parse(raw) as Partial<ValidWire & InvalidWire>
  } catch {
    return null
  }
  if (wire === null || typeof wire !== 'object' || wire.v !== 1) return null
  if (wire.r !== undefined) return REASONS.has(wire.r) ? { valid: false, reason: wire.r } : null
  if (
    !isStr(wire.sid) || !isStr(wire.uid) || !isStr(wire.ca) || !isStr(wire.ea) || !isStrOrNull(wire.la) ||
    typeof wire.x !== 'number' || !isStr(wire.em) || !isStrOrNull(wire.fn) || !isStrOrNull(wire.ln) ||
    !isStrOrNull(wire.un)
  ) {
    return null
  }
  return {
    valid: true,
    entry: {
      session: { id: wire.sid, userId: wire.uid, createdAt: wire.ca, expiresAt: wire.ea, lastActivityAt: wire.la },
      user: { id: wire.uid, email: wire.em, firstName: wire.fn, lastName: wire.ln, username: wire.un },
      expiresAtMs: wire.x,
    },
  }
}
