import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createCacheCipher, decodeKeySecret } from '../../src/cache/cipher.js'
import { createAnswerCodec, type Undecodable } from '../../src/cache/codec.js'
import type { SessionAnswer } from '../../src/domain/session.js'

/** The sealed value format: round trips, binds to its context, names its key, and never throws on bad input. */

const secret = () => randomBytes(32).toString('base64')
const HASH = 'a'.repeat(64)
const OTHER_HASH = 'b'.repeat(64)

const valid: SessionAnswer = {
  valid: true,
  entry: {
    session: {
      id: '2a60d63d-8210-4d78-88d2-461b7d3e712e',
      userId: '06fb649b-5c77-4957-8365-79319071adef',
      createdAt: '2026-11-25T19:31:54.074Z',
      expiresAt: '2026-12-02T19:31:54.142Z',
      lastActivityAt: null,
    },
    user: { id: '06fb649b-5c77-4957-8365-79319071adef', email: 'ada@example.test', firstName: 'Ada', lastName: null, username: 'ada' },
    expiresAtMs: Date.parse('2026-12-02T19:31:54.142Z'),
    readAtMs: Date.parse('2026-12-02T18:31:54.142Z'),
  },
}

function codecWith(keys: Array<{ id: string; secret: string }>, memoEntries = 0) {
  const failures: Undecodable[] = []
  return { codec: createAnswerCodec(createCacheCipher(keys), { memoEntries, onUndecodable: (why) => failures.push(why) }), failures }
}

describe('cache value codec (AES-256-GCM)', () => {
  it('round-trips valid and invalid answers, with nothing personal in clear', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    const raw = codec.encode(HASH, valid)
    expect(raw).not.toMatch(/ada|Ada|example|2026-/)
    expect(codec.decode(HASH, raw)).toEqual(valid)
    for (const reason of ['not_found', 'expired', 'revoked', 'user_banned', 'user_deleted'] as const) {
      const sealed = codec.encode(HASH, { valid: false, reason })
      expect(sealed).not.toContain(reason)
      expect(codec.decode(HASH, sealed)).toEqual({ valid: false, reason })
    }
    expect(failures).toEqual([])
  })

  it('uses a fresh IV each time: the same answer never seals to the same value', () => {
    const { codec } = codecWith([{ id: 'k1', secret: secret() }])
    expect(codec.encode(HASH, valid)).not.toBe(codec.encode(HASH, valid))
  })

  it('binds a value to its token hash: under another hash it does not open', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    expect(codec.decode(OTHER_HASH, codec.encode(HASH, valid))).toBeNull()
    expect(codec.decode(OTHER_HASH, codec.encode(HASH, { valid: false, reason: 'revoked' }))).toBeNull()
    expect(failures).toEqual(['rejected', 'rejected'])
  })

  it('seals with the first key and opens with any listed key; an unlisted key id is reported as such', () => {
    const k1 = { id: 'k1', secret: secret() }
    const k2 = { id: 'k2', secret: secret() }
    const old = codecWith([k1]).codec
    const rotating = codecWith([k2, k1]).codec
    const fresh = codecWith([k2])
    const sealedByOld = old.encode(HASH, valid)
    expect(rotating.decode(HASH, sealedByOld)).toEqual(valid)
    const sealedByNew = rotating.encode(HASH, valid)
    expect(sealedByNew).toContain('"p":"k2.')
    expect(fresh.codec.decode(HASH, sealedByNew)).toEqual(valid)
    expect(fresh.codec.decode(HASH, sealedByOld)).toBeNull()
    expect(fresh.failures).toEqual(['unknown_key'])
  })

  it('remembers what it sealed or opened, but only for the same stored string under the same token hash', () => {
    const k1 = { id: 'k1', secret: secret() }
    const { codec, failures } = codecWith([k1], 100)
    const raw = codec.encode(HASH, valid)
    // The same string under another hash (a value copied onto another key) still goes through the cipher, and fails.
    expect(codec.decode(OTHER_HASH, raw)).toBeNull()
    expect(failures).toEqual(['rejected'])
    expect(codec.decode(HASH, raw)).toEqual(valid)
    // A reader with a memo and one without give the same answers.
    const other = codecWith([k1], 100).codec
    expect(other.decode(HASH, raw)).toEqual(valid)
    expect(other.decode(HASH, raw)).toEqual(valid)
    expect(other.decode(OTHER_HASH, raw)).toBeNull()
  })

  it('never throws on garbage: every malformed input decodes to null', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    const garbage = ['', 'null', '[]', '{}', '{"v":3}', '{"v":3,"p":5}', '{"v":3,"p":"k1."}', '{"v":3,"p":"k1.!!!!"}',
      '{"v":3,"sid":1,"uid":"u","p":"k1.AAAA"}', '{"v":2,"p":"k1.AAAA"}', '{"v":1,"r":"revoked"}', 'not json', '"k1.AAAA"']
    for (const raw of garbage) expect(codec.decode(HASH, raw), raw).toBeNull()
    expect(failures.length).toBe(garbage.length)
  })

  it('refuses bad key material up front', () => {
    expect(() => decodeKeySecret('k', 'too-short')).toThrow(/32 random bytes/)
    expect(() => decodeKeySecret('k', randomBytes(31).toString('base64'))).toThrow(/32 random bytes/)
    expect(decodeKeySecret('k', randomBytes(32).toString('base64url')).length).toBe(32)
    expect(() => createCacheCipher([])).toThrow(/at least one/)
    expect(() => createCacheCipher([{ id: 'a', secret: secret() }, { id: 'a', secret: secret() }])).toThrow(/twice/)
    expect(() => createCacheCipher([{ id: 'bad id', secret: secret() }])).toThrow(/must match/)
  })
})
