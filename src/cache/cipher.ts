import { createCipheriv, createDecipheriv, createSecretKey, randomFillSync, type KeyObject } from 'node:crypto'

/**
 * AES-256-GCM for what the cache holds about a person, with key ids so keys can be rotated without a flush: the first
 * key encrypts, every listed key decrypts. A sealed value is raw bytes:
 *
 *   [format << 4 | key id length − 1] [key id] [iv, 12] [ciphertext] [tag, 16]
 *
 * The first byte carries the caller's format number (0–15, in the high nibble) and the length of the key id (1–16
 * characters, in the low nibble), so the envelope costs 29 bytes plus the key id. It is bound to the first byte, the key
 * id and the caller's context (additional authenticated data: codec.ts gives the token hash), so a value copied onto
 * another key, relabelled, or edited in place, does not open.
 *
 * Cost: one createDecipheriv per open, on a KeyObject made once per key (a raw Buffer key costs ~4× as much per call:
 * OpenSSL re-imports it each time). Random 96-bit IVs: rotate a key well before 2^32 encryptions with it.
 */

const ALGORITHM = 'aes-256-gcm'
const IV_BYTES = 12
const TAG_BYTES = 16
export const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,16}$/

export interface CacheKey {
  /** Short id stored beside each value, so a value names the key that sealed it. */
  id: string
  /** 32 bytes, base64 (standard or url-safe alphabet). */
  secret: string
}

/** Why a sealed value did not open: sealed with a key this instance does not hold, or not authentic/not well formed. */
export type OpenFailure = 'unknown_key' | 'rejected'

export interface CacheCipher {
  /** The id of the key that seals. */
  readonly sealingKeyId: string
  /** Seals `plaintext` under the first key, tagged with `format` (0–15) and bound to `context` (latin1). */
  seal(format: number, plaintext: Buffer, context: string): Buffer
  /** The plaintext, or why there is none. Never throws; does not look at the format (see sealedFormat). */
  open(sealed: Buffer, context: string): Buffer | OpenFailure
}

/** The format number a sealed value was tagged with (−1 for an empty value). */
export const sealedFormat = (sealed: Buffer): number => (sealed.length === 0 ? -1 : sealed[0]! >> 4)

/** Decodes a 32-byte key from base64/base64url; throws with a message fit for a configuration error. */
export function decodeKeySecret(id: string, secret: string): Buffer {
  // 32 bytes are 43 base64 characters and one '=' of padding (optional); Node's decoder takes both alphabets.
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(secret)) {
    throw new Error(`cache key "${id}" must be 32 random bytes in base64, e.g. from \`openssl rand -base64 32\``)
  }
  return Buffer.from(secret, 'base64')
}

export function createCacheCipher(keys: readonly CacheKey[]): CacheCipher {
  if (keys.length === 0) throw new Error('at least one cache encryption key is required')
  const ring = new Map<string, KeyObject>()
  for (const { id, secret } of keys) {
    if (!KEY_ID_PATTERN.test(id)) throw new Error(`cache key id "${id}" must match ${KEY_ID_PATTERN}`)
    if (ring.has(id)) throw new Error(`cache key id "${id}" is listed twice`)
    ring.set(id, createSecretKey(decodeKeySecret(id, secret)))
  }
  const sealingKeyId = keys[0]!.id
  const sealingKey = ring.get(sealingKeyId)!
  // Key ids are ASCII (KEY_ID_PATTERN): one byte per character.
  const idBytes = Buffer.from(sealingKeyId, 'latin1')
  const headBytes = 1 + idBytes.length

  return {
    sealingKeyId,
    seal(format, plaintext, context) {
      if (!Number.isInteger(format) || format < 0 || format > 15) throw new RangeError(`sealed format ${format} is not 0–15`)
      const sealed = Buffer.allocUnsafe(headBytes + IV_BYTES + plaintext.length + TAG_BYTES)
      sealed[0] = (format << 4) | (idBytes.length - 1)
      idBytes.copy(sealed, 1)
      const iv = randomFillSync(sealed, headBytes, IV_BYTES).subarray(headBytes, headBytes + IV_BYTES)
      const cipher = createCipheriv(ALGORITHM, sealingKey, iv, { authTagLength: TAG_BYTES })
      cipher.setAAD(sealed.subarray(0, headBytes))
      cipher.setAAD(Buffer.from(context, 'latin1'))
      let at = headBytes + IV_BYTES
      at += cipher.update(plaintext).copy(sealed, at)
      at += cipher.final().copy(sealed, at)
      cipher.getAuthTag().copy(sealed, at)
      return sealed
    },
    open(sealed, context) {
      if (sealed.length === 0) return 'rejected'
      const headLength = 1 + (sealed[0]! & 0x0f) + 1
      if (sealed.length < headLength + IV_BYTES + TAG_BYTES) return 'rejected'
      const key = ring.get(sealed.toString('latin1', 1, headLength))
      if (!key) return 'unknown_key'
      const bodyEnd = sealed.length - TAG_BYTES
      try {
        const decipher = createDecipheriv(ALGORITHM, key, sealed.subarray(headLength, headLength + IV_BYTES), { authTagLength: TAG_BYTES })
        decipher.setAAD(sealed.subarray(0, headLength))
        decipher.setAAD(Buffer.from(context, 'latin1'))
        decipher.setAuthTag(sealed.subarray(bodyEnd))
        const plaintext = decipher.update(sealed.subarray(headLength + IV_BYTES, bodyEnd))
        const rest = decipher.final()
        return rest.length === 0 ? plaintext : Buffer.concat([plaintext, rest])
      } catch {
        // A wrong key, a tampered value or a value moved to another key: GCM's tag check fails in final().
        return 'rejected'
      }
    },
  }
}
