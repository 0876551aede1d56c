import { LRUCache } from 'lru-cache'
import type { InvalidReason, SessionAnswer, ValidEntry } from '../domain/session.js'
import { sealedFormat, type CacheCipher, type OpenFailure } from './cipher.js'
import { isCanonicalUuid, readUuid, writeUuid } from './compact-ids.js'

/**
 * The cached value, format 4: one sealed blob of raw bytes (cipher.ts), never the token and nothing in clear but the
 * key id that sealed it:
 *
 *   [0x40 | key id length − 1] [key id] [iv, 12] [ciphertext] [GCM tag, 16]      bound to: the token hash
 *
 * The plaintext is a compact binary record. A "not valid" answer is one byte, its reason (1 not_found, 2 expired,
 * 3 revoked, 4 user_banned, 5 user_deleted), sealed like any other answer, so nobody with write access to Redis alone
 * can make a valid session look revoked (deleting a value only costs a Postgres read). A valid answer is:
 *
 *   flags        0x80 | 0x01 lastActivityAt | 0x02 firstName | 0x04 lastName | 0x08 username (each when not null)
 *                     | 0x10 ids as text (not lowercase UUIDs; the store's never are: Postgres prints uuid so)
 *   session id, user id    16 bytes each (or, with 0x10, each a varint length and UTF-8)
 *   readAtMs               zigzag varint, epoch milliseconds
 *   expiresAt, createdAt, lastActivityAt (if 0x01)
 *                          zigzag varints, milliseconds from readAtMs (so ~4–5 bytes each instead of 8)
 *   email, firstName, lastName, username (each if its flag)
 *                          varint length + UTF-8
 *
 * Times travel as epoch milliseconds: the store writes them with toISOString(), which this reproduces exactly, and
 * expiresAtMs is Date.parse(expiresAt) by construction (domain/verdict.ts), so it is not stored twice. encode()
 * throws on an answer it could not give back as it was (a time not in toISOString form, or beyond ±2^51 ms of
 * readAtMs; expiresAtMs other than Date.parse(expiresAt); a user id other than the session's): the fill fails and is
 * counted, nothing wrong is cached. The token hash binds the seal, so a value moved onto another token's key, or
 * edited, does not open. The session and user ids are inside the seal: the scripts never read values (scripts.ts).
 *
 * Anything that does not open or parse decodes to null, which the caller treats as a miss (Postgres answers), counted
 * through onUndecodable with its reason. That includes a format-3 value (JSON, `{"v":3,…}`) left in Redis by an older
 * instance: its first byte is `{`, not a format-4 one, so it is 'malformed'. Across a rolling deploy old and new
 * instances cost each other misses, never a wrong answer (they use different key names too: keys.ts; what that means
 * for an /invalidate during the deploy: docs/operations.md, "Deploying a change of the cache's format").
 *
 * The hit path's cost: a decryption is ~5 µs of CPU (createDecipheriv dominates), several times the rest of decoding.
 * So the codec remembers what it sealed and opened, indexed by the value's GCM tag and checked byte for byte against
 * the stored value and against the token hash it belongs to: a hit on an entry unchanged since this process last saw
 * it does no decryption at all. Every fill stores new bytes (a fresh IV), so nothing stale can be served from it, and
 * a value copied onto another token's key does not match (the hash is compared). `memoEntries` bounds it (least
 * recently used go first); each remembered value is a copy of its own (ownCopy), so it never pins a socket buffer or a
 * slab of Node's Buffer pool.
 */

export const FORMAT = 4

const VALID = 0x80
const HAS_LAST_ACTIVITY = 0x01
const HAS_FIRST_NAME = 0x02
const HAS_LAST_NAME = 0x04
const HAS_USERNAME = 0x08
const TEXT_IDS = 0x10
const KNOWN_FLAGS = VALID | HAS_LAST_ACTIVITY | HAS_FIRST_NAME | HAS_LAST_NAME | HAS_USERNAME | TEXT_IDS

const REASON_CODES: Record<InvalidReason, number> = { not_found: 1, expired: 2, revoked: 3, user_banned: 4, user_deleted: 5 }
const REASONS: readonly (InvalidReason | undefined)[] = [undefined, 'not_found', 'expired', 'revoked', 'user_banned', 'user_deleted']
/** Sealed reason bytes, made once (the plaintext of every "not valid" answer). */
const REASON_PLAINTEXT = new Map(Object.entries(REASON_CODES).map(([reason, code]) => [reason, Buffer.from([code])]))

/** Offsets from readAtMs are bounded so that their zigzag form stays a safe integer. */
const MAX_OFFSET = 2 ** 51
const GCM_TAG_BYTES = 16

export type Undecodable = OpenFailure | 'malformed'

export interface AnswerCodec {
  encode(tokenHash: string, answer: SessionAnswer): Buffer
  /** The answer, or null for anything this version cannot open and trust (then counted through onUndecodable). */
  decode(tokenHash: string, raw: Buffer): SessionAnswer | null
}

export interface AnswerCodecOptions {
  /** Sealed values remembered with their answer (0: none, every hit decrypts). */
  memoEntries?: number
  onUndecodable?: (why: Undecodable) => void
}

interface Remembered {
  tokenHash: string
  raw: Buffer
  answer: SessionAnswer
}

// --- writing

const zigzag = (n: number) => (n >= 0 ? n * 2 : -n * 2 - 1)

function varintBytes(n: number): number {
  let bytes = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    bytes++
  }
  return bytes
}

function writeVarint(target: Buffer, at: number, n: number): number {
  while (n >= 128) {
    target[at++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  target[at++] = n
  return at
}

function writeText(target: Buffer, at: number, text: string, bytes: number): number {
  at = writeVarint(target, at, bytes)
  return at + target.write(text, at, 'utf8')
}

/** Epoch ms of a time the store wrote with toISOString(); throws for anything else (it would not come back as is). */
function isoMs(iso: string, field: string): number {
  const ms = Date.parse(iso)
  if (!Number.isInteger(ms) || new Date(ms).toISOString() !== iso) {
    throw new TypeError(`cache codec: ${field} must be a toISOString() time to be stored as milliseconds`)
  }
  return ms
}

/** The zigzag form of a time as an offset from readAtMs. */
function offset(ms: number, readAtMs: number, field: string): number {
  const delta = ms - readAtMs
  if (!(Math.abs(delta) <= MAX_OFFSET)) throw new RangeError(`cache codec: ${field} is too far from readAtMs to be stored`)
  return zigzag(delta)
}

function validPlaintext(entry: ValidEntry): Buffer {
  const { session: s, user: u, expiresAtMs, readAtMs } = entry
  if (u.id !== s.userId) throw new TypeError('cache codec: user.id must be the session\'s userId (it is stored once)')
  if (!Number.isSafeInteger(readAtMs) || Math.abs(readAtMs) > MAX_OFFSET) throw new RangeError('cache codec: readAtMs must be epoch milliseconds')
  if (isoMs(s.expiresAt, 'expiresAt') !== expiresAtMs) throw new TypeError('cache codec: expiresAtMs must be Date.parse(expiresAt)')
  const read = zigzag(readAtMs)
  const expires = offset(expiresAtMs, readAtMs, 'expiresAt')
  const created = offset(isoMs(s.createdAt, 'createdAt'), readAtMs, 'createdAt')
  const active = s.lastActivityAt === null ? 0 : offset(isoMs(s.lastActivityAt, 'lastActivityAt'), readAtMs, 'lastActivityAt')

  const uuids = isCanonicalUuid(s.id) && isCanonicalUuid(s.userId)
  const sidBytes = uuids ? 16 : Buffer.byteLength(s.id, 'utf8')
  const uidBytes = uuids ? 16 : Buffer.byteLength(s.userId, 'utf8')
  const emailBytes = Buffer.byteLength(u.email, 'utf8')
  const firstBytes = u.firstName === null ? 0 : Buffer.byteLength(u.firstName, 'utf8')
  const lastBytes = u.lastName === null ? 0 : Buffer.byteLength(u.lastName, 'utf8')
  const userBytes = u.username === null ? 0 : Buffer.byteLength(u.username, 'utf8')
  const text = (present: boolean, bytes: number) => (present ? varintBytes(bytes) + bytes : 0)

  let flags = VALID
  if (s.lastActivityAt !== null) flags |= HAS_LAST_ACTIVITY
  if (u.firstName !== null) flags |= HAS_FIRST_NAME
  if (u.lastName !== null) flags |= HAS_LAST_NAME
  if (u.username !== null) flags |= HAS_USERNAME
  if (!uuids) flags |= TEXT_IDS
  const size =
    1 +
    (uuids ? 32 : text(true, sidBytes) + text(true, uidBytes)) +
    varintBytes(read) + varintBytes(expires) + varintBytes(created) + (s.lastActivityAt === null ? 0 : varintBytes(active)) +
    text(true, emailBytes) + text(u.firstName !== null, firstBytes) + text(u.lastName !== null, lastBytes) + text(u.username !== null, userBytes)

  const p = Buffer.allocUnsafe(size)
  p[0] = flags
  let at = 1
  if (uuids) {
    writeUuid(s.id, p, at)
    writeUuid(s.userId, p, at + 16)
    at += 32
  } else {
    at = writeText(p, at, s.id, sidBytes)
    at = writeText(p, at, s.userId, uidBytes)
  }
  at = writeVarint(p, at, read)
  at = writeVarint(p, at, expires)
  at = writeVarint(p, at, created)
  if (s.lastActivityAt !== null) at = writeVarint(p, at, active)
  at = writeText(p, at, u.email, emailBytes)
  if (u.firstName !== null) at = writeText(p, at, u.firstName, firstBytes)
  if (u.lastName !== null) at = writeText(p, at, u.lastName, lastBytes)
  if (u.username !== null) at = writeText(p, at, u.username, userBytes)
  if (at !== size) throw new Error(`cache codec: wrote ${at} bytes of ${size}`)
  return p
}

// --- reading

/** Thrown by Reader on anything out of bounds or out of form; open() turns it into 'malformed'. */
class Malformed extends Error {}

class Reader {
  at = 1
  constructor(readonly p: Buffer) {}

  varint(): number {
    let n = 0
    let scale = 1
    // 8 bytes carry 56 bits: more than any safe integer needs.
    for (let i = 0; i < 8; i++) {
      const byte = this.p[this.at++]
      if (byte === undefined) throw new Malformed()
      n += (byte & 0x7f) * scale
      if (byte < 0x80) {
        if (!Number.isSafeInteger(n)) throw new Malformed()
        return n
      }
      scale *= 128
    }
    throw new Malformed()
  }

  signed(): number {
    const z = this.varint()
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2
  }

  time(base: number): string {
    const ms = base + this.signed()
    // ±8.64e15 ms is the range of a Date; anything past it (only a forged or corrupt record) is not a time.
    if (!(Math.abs(ms) <= 8.64e15)) throw new Malformed()
    return new Date(ms).toISOString()
  }

  text(): string {
    const bytes = this.varint()
    const end = this.at + bytes
    if (end > this.p.length) throw new Malformed()
    const value = this.p.toString('utf8', this.at, end)
    this.at = end
    return value
  }

  uuid(): string {
    const end = this.at + 16
    if (end > this.p.length) throw new Malformed()
    const value = readUuid(this.p, this.at)
    this.at = end
    return value
  }
}

function parseValid(p: Buffer): SessionAnswer {
  const flags = p[0]!
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new Malformed()
  const r = new Reader(p)
  const textIds = (flags & TEXT_IDS) !== 0
  const id = textIds ? r.text() : r.uuid()
  const userId = textIds ? r.text() : r.uuid()
  const readAtMs = r.signed()
  const expiresAt = r.time(readAtMs)
  const createdAt = r.time(readAtMs)
  const lastActivityAt = flags & HAS_LAST_ACTIVITY ? r.time(readAtMs) : null
  const email = r.text()
  const firstName = flags & HAS_FIRST_NAME ? r.text() : null
  const lastName = flags & HAS_LAST_NAME ? r.text() : null
  const username = flags & HAS_USERNAME ? r.text() : null
  if (r.at !== p.length) throw new Malformed()
  return {
    valid: true,
    entry: {
      session: { id, userId, createdAt, expiresAt, lastActivityAt },
      user: { id: userId, email, firstName, lastName, username },
      expiresAtMs: Date.parse(expiresAt),
      readAtMs,
    },
  }
}

/**
 * What the memo keeps of a value: a copy in memory of its own. A value read from Redis may be a slice of a larger
 * socket buffer, and a small Buffer made the usual way (Buffer.from, allocUnsafe, as seal's is) is a slice of Node's
 * shared 8 KiB pool: remembering either would keep the whole of that alive, up to 8 KiB per remembered 200-byte value
 * (the soak saw external memory climb by ~90 MiB as the memo filled). Unpooled, each costs its own bytes.
 */
function ownCopy(raw: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(raw.length)
  raw.copy(copy)
  return copy
}

/** The GCM tag: distinct for every seal, so the memo's index; a hit is then compared byte for byte. */
const memoKey = (raw: Buffer) => raw.toString('latin1', Math.max(0, raw.length - GCM_TAG_BYTES))

export function createAnswerCodec(cipher: CacheCipher, options: AnswerCodecOptions = {}): AnswerCodec {
  const onUndecodable = options.onUndecodable ?? (() => undefined)
  const memo = (options.memoEntries ?? 0) > 0 ? new LRUCache<string, Remembered>({ max: options.memoEntries! }) : undefined
  const fail = (why: Undecodable): null => {
    onUndecodable(why)
    return null
  }

  function seal(tokenHash: string, answer: SessionAnswer): Buffer {
    const plaintext = answer.valid ? validPlaintext(answer.entry) : REASON_PLAINTEXT.get(answer.reason)
    if (plaintext === undefined) throw new TypeError(`cache codec: unknown reason ${String((answer as { reason: unknown }).reason)}`)
    return cipher.seal(FORMAT, plaintext, tokenHash)
  }

  function open(tokenHash: string, raw: Buffer): SessionAnswer | null {
    if (sealedFormat(raw) !== FORMAT) return fail('malformed')
    const p = cipher.open(raw, tokenHash)
    if (p === 'unknown_key' || p === 'rejected') return fail(p)
    if (p.length === 0) return fail('malformed')
    if ((p[0]! & VALID) === 0) {
      const reason = p.length === 1 ? REASONS[p[0]!] : undefined
      return reason === undefined ? fail('malformed') : { valid: false, reason }
    }
    try {
      return parseValid(p)
    } catch {
      // Malformed from the reader; nothing else is expected, and decode() never throws whatever it is given.
      return fail('malformed')
    }
  }

  return {
    encode(tokenHash, answer) {
      const raw = seal(tokenHash, answer)
      memo?.set(memoKey(raw), { tokenHash, raw: ownCopy(raw), answer })
      return raw
    },

    decode(tokenHash, raw) {
      if (memo !== undefined) {
        const known = memo.get(memoKey(raw))
        if (known !== undefined && known.tokenHash === tokenHash && known.raw.equals(raw)) return known.answer
      }
      const answer = open(tokenHash, raw)
      if (answer !== null) memo?.set(memoKey(raw), { tokenHash, raw: ownCopy(raw), answer })
      return answer
    },
  }
}
