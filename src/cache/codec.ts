import { LRUCache } from 'lru-cache'
import type { InvalidReason, SessionAnswer } from '../domain/session.js'
import type { CacheCipher, OpenFailure } from './cipher.js'

/**
 * The cached value: compact JSON, never the token, and nothing personal in clear. Everything but the two ids is sealed
 * with AES-256-GCM (cipher.ts) in one piece, so a hit costs exactly one decryption:
 *
 *   valid     {"v":3,"sid":"<session id>","uid":"<user id>","p":"<key id>.<base64>"}
 *             sealed: [createdAt, expiresAt, lastActivityAt, expiresAtMs, email, firstName, lastName, username, readAtMs]
 *             bound to: "<token hash>|<sid>|<uid>"
 *   not valid {"v":3,"p":"<key id>.<base64>"}
 *             sealed: the reason; bound to: "<token hash>"
 *
 * `sid` and `uid` stay readable because the invalidation script (scripts.ts) cjson-decodes values to clean the
 * indexes, and the key names already carry them. Binding the seal to the token hash means a value moved onto another
 * token's key, or edited, does not open; a "not valid" answer is sealed too, so nobody with write access to Redis
 * alone can make a valid session look revoked (deleting a value only costs a Postgres read).
 * Anything that does not open or parse decodes to null, which the caller treats as a miss (Postgres answers).
 *
 * The hit path's cost: a decryption is ~5 µs of CPU (createDecipheriv dominates), several times the rest of decoding.
 * So the codec remembers what it sealed and opened, keyed by the exact stored string and checked against the token
 * hash it belongs to: a hit on an entry unchanged since this process last saw it does no decryption at all. Every
 * fill stores a new string (a fresh IV), so nothing stale can be served from it, and a value copied onto another
 * token's key does not match (the hash is compared). `memoEntries` bounds it (least recently used go first).
 */

type Sealed = [string, string, string | null, number, string, string | null, string | null, string | null, number]
interface Wire {
  v: 3
  sid?: string
  uid?: string
  p: string
}

export type Undecodable = OpenFailure | 'malformed'

export interface AnswerCodec {
  encode(tokenHash: string, answer: SessionAnswer): string
  /** The answer, or null for anything this version cannot open and trust (then counted through onUndecodable). */
  decode(tokenHash: string, raw: string): SessionAnswer | null
}

const REASONS: ReadonlySet<string> = new Set<InvalidReason>(['not_found', 'expired', 'revoked', 'user_banned', 'user_deleted'])

const isStr = (v: unknown): v is string => typeof v === 'string'
const isStrOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string'

function wellFormed(s: unknown): s is Sealed {
  return (
    Array.isArray(s) && s.length === 9 && isStr(s[0]) && isStr(s[1]) && isStrOrNull(s[2]) && typeof s[3] === 'number' &&
    isStr(s[4]) && isStrOrNull(s[5]) && isStrOrNull(s[6]) && isStrOrNull(s[7]) && typeof s[8] === 'number'
  )
}

export interface AnswerCodecOptions {
  /** Sealed values remembered with their answer (0: none, every hit decrypts). */
  memoEntries?: number
  onUndecodable?: (why: Undecodable) => void
}

interface Remembered {
  tokenHash: string
  answer: SessionAnswer
}

export function createAnswerCodec(cipher: CacheCipher, options: AnswerCodecOptions = {}): AnswerCodec {
  const onUndecodable = options.onUndecodable ?? (() => undefined)
  const memo = (options.memoEntries ?? 0) > 0 ? new LRUCache<string, Remembered>({ max: options.memoEntries! }) : undefined
  const fail = (why: Undecodable): null => {
    onUndecodable(why)
    return null
  }

  function seal(tokenHash: string, answer: SessionAnswer): string {
    if (!answer.valid) return JSON.stringify({ v: 3, p: cipher.seal(answer.reason, tokenHash) } satisfies Wire)
    const { session: s, user: u, expiresAtMs, readAtMs } = answer.entry
    const sealed: Sealed = [s.createdAt, s.expiresAt, s.lastActivityAt, expiresAtMs, u.email, u.firstName, u.lastName, u.username, readAtMs]
    const wire: Wire = {
      v: 3,
      sid: s.id,
      uid: s.userId,
      p: cipher.seal(JSON.stringify(sealed), `${tokenHash}|${s.id}|${s.userId}`),
    }
    return JSON.stringify(wire)
  }

  function open(tokenHash: string, raw: string): SessionAnswer | null {
    let wire: Partial<Wire>
    try {
      wire = JSON.parse(raw) as Partial<Wire>
    } catch {
      return fail('malformed')
    }
    if (wire === null || typeof wire !== 'object' || wire.v !== 3 || !isStr(wire.p)) return fail('malformed')
    const { sid, uid } = wire
    if (sid === undefined) {
      const reason = cipher.open(wire.p, tokenHash)
      if (reason === 'unknown_key' || reason === 'rejected') return fail(reason)
      return REASONS.has(reason) ? { valid: false, reason: reason as InvalidReason } : fail('malformed')
    }
    if (!isStr(sid) || !isStr(uid)) return fail('malformed')
    const opened = cipher.open(wire.p, `${tokenHash}|${sid}|${uid}`)
    if (opened === 'unknown_key' || opened === 'rejected') return fail(opened)
    let s: unknown
    try {
      s = JSON.parse(opened)
    } catch {
      return fail('malformed')
    }
    if (!wellFormed(s)) return fail('malformed')
    return {
      valid: true,
      entry: {
        session: { id: sid, userId: uid, createdAt: s[0], expiresAt: s[1], lastActivityAt: s[2] },
        user: { id: uid, email: s[4], firstName: s[5], lastName: s[6], username: s[7] },
        expiresAtMs: s[3],
        readAtMs: s[8],
      },
    }
  }

  return {
    encode(tokenHash, answer) {
      const raw = seal(tokenHash, answer)
      memo?.set(raw, { tokenHash, answer })
      return raw
    },

    decode(tokenHash, raw) {
      const known = memo?.get(raw)
      if (known !== undefined && known.tokenHash === tokenHash) return known.answer
      const answer = open(tokenHash, raw)
      if (answer !== null) memo?.set(raw, { tokenHash, answer })
      return answer
    },
  }
}
