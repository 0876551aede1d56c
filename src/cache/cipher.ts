import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto'

/**
 * AES-256-GCM for what the cache holds about a person, with key ids so keys can be rotated without a flush: the first
 * key encrypts, every listed key decrypts. A sealed value is `<key id>` + `.` + base64(iv ‖ ciphertext ‖ tag), and is
 * bound to its context (the token hash and the session's ids, as additional authenticated data), so a value copied
 * onto another key, or edited in place, does not open.
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
  seal(plaintext: string, context: string): string
  /** The plaintext, or why there is none. Never throws. */
  open(sealed: string, context: string): string | OpenFailure
}

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
  const prefix = `${sealingKeyId}.`

  return {
    sealingKeyId,
    seal(plaintext, context) {
      const iv = randomBytes(IV_BYTES)
      const cipher = createCipheriv(ALGORITHM, sealingKey, iv, { authTagLength: TAG_BYTES })
      cipher.setAAD(Buffer.from(context, 'latin1'))
      const body = Buffer.concat([iv, cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()])
      return prefix + body.toString('base64')
    },
    open(sealed, context) {
      const dot = sealed.indexOf('.')
      const key = dot > 0 ? ring.get(sealed.slice(0, dot)) : undefined
      if (!key) return 'unknown_key'
      const body = Buffer.from(sealed.slice(dot + 1), 'base64')
      if (body.length < IV_BYTES + TAG_BYTES) return 'rejected'
      try {
        const decipher = createDecipheriv(ALGORITHM, key, body.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES })
        decipher.setAAD(Buffer.from(context, 'latin1'))
        decipher.setAuthTag(body.subarray(body.length - TAG_BYTES))
        return decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES), undefined, 'utf8') + decipher.final('utf8')
      } catch {
        // A wrong key, a tampered value or a value moved to another key: GCM's tag check fails in final().
        return 'rejected'
      }
    },
  }
}
