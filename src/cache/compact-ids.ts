/**
 * Compact forms of the ids the cache stores, shared by the key scheme (keys.ts) and the value codec (codec.ts):
 *   - a token hash (64 hex characters, SHA-256) → its first 96 bits: 12 bytes in an index, 16 base64url characters
 *     in a key (why 96 bits are enough: keys.ts);
 *   - a UUID (8-4-4-4-12 hex) → 16 bytes, or 22 base64url characters in a key (exact: never truncated).
 * Every conversion is exact and injective: what is not in the expected form is kept verbatim behind a character that
 * base64url never produces (`=`), so two different inputs never share a key.
 */

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
/** Hex digit → value (−1: not a hex digit), for both cases. */
const NIBBLE = new Int8Array(128).fill(-1)
for (let i = 0; i < 16; i++) {
  NIBBLE['0123456789abcdef'.charCodeAt(i)] = i
  NIBBLE['0123456789ABCDEF'.charCodeAt(i)] = i
}
/** 12 bits → the two base64url characters that encode them. */
const PAIR: string[] = []
for (let i = 0; i < 4096; i++) PAIR.push(B64URL[i >> 6]! + B64URL[i & 63]!)

const nibble = (s: string, at: number): number => NIBBLE[s.charCodeAt(at)] ?? -1

/** Bytes of a truncated token hash, in index members and key tags. */
export const HASH_TAG_BYTES = 12
const HASH_TAG_HEX = HASH_TAG_BYTES * 2
const HEX_64 = /^[0-9a-fA-F]{64}$/

/**
 * The tag of a token's keys: base64url of the first 12 bytes of its SHA-256 (the same string as
 * `Buffer.from(hash.slice(0, 24), 'hex').toString('base64url')`, computed without a Buffer: this runs on every
 * lookup). Not a 64-hex-character hash: `=` and the string as given.
 */
export function hashTag(tokenHash: string): string {
  if (tokenHash.length !== 64) return `=${tokenHash}`
  // Three hex digits are 12 bits, two base64 characters: 24 digits are 16 characters, exactly as base64url encodes
  // 12 bytes (no padding).
  let tag = ''
  let bad = 0
  for (let i = 0; i < HASH_TAG_HEX; i += 3) {
    const a = nibble(tokenHash, i)
    const b = nibble(tokenHash, i + 1)
    const c = nibble(tokenHash, i + 2)
    bad |= a | b | c
    tag += PAIR[((a << 8) | (b << 4) | c) & 4095]
  }
  // The digits past the tag do not shape it, but a string that is not a hash at all must not share a hash's keys.
  for (let i = HASH_TAG_HEX; i < 64; i++) bad |= nibble(tokenHash, i)
  return bad < 0 ? `=${tokenHash}` : tag
}

/** The 12 bytes an index stores for a token (the same 96 bits as its tag). Throws if it is not a 64-hex hash. */
export function hashMember(tokenHash: string): Buffer {
  if (!HEX_64.test(tokenHash)) throw new TypeError('a token hash is 64 hexadecimal characters')
  return Buffer.from(tokenHash.slice(0, HASH_TAG_HEX), 'hex')
}

/** The tag of the token an index member names (hashMember's inverse, up to the tag). */
export const memberTag = (member: Buffer): string => member.toString('base64url')

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/
/** Lowercase, as Postgres prints a uuid: only these are stored as 16 bytes in values (they must decode as given). */
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The tag of a session's or user's keys: base64url of the UUID's 16 bytes (either case); anything else `=` + it. */
export function uuidTag(id: string): string {
  return UUID.test(id) ? Buffer.from(id.replaceAll('-', ''), 'hex').toString('base64url') : `=${id}`
}

export const isCanonicalUuid = (id: string): boolean => CANONICAL_UUID.test(id)

/** Writes a canonical UUID's 16 bytes at `at` (the caller has checked isCanonicalUuid). */
export function writeUuid(id: string, target: Buffer, at: number): void {
  target.write(id.slice(0, 8), at, 'hex')
  target.write(id.slice(9, 13), at + 4, 'hex')
  target.write(id.slice(14, 18), at + 6, 'hex')
  target.write(id.slice(19, 23), at + 8, 'hex')
  target.write(id.slice(24, 36), at + 10, 'hex')
}

/** The canonical (lowercase) UUID of 16 bytes at `at`. */
export function readUuid(source: Buffer, at: number): string {
  const h = source.toString('hex', at, at + 16)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}
