import { randomBytes, randomUUID } from 'node:crypto'
import v8 from 'node:v8'
import vm from 'node:vm'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createCacheCipher, decodeKeySecret, type CacheCipher } from '../../src/cache/cipher.js'
import { createAnswerCodec, FORMAT, type Undecodable } from '../../src/cache/codec.js'
import type { SessionAnswer, ValidEntry } from '../../src/domain/session.js'
import { hashToken } from '../../src/domain/token.js'

/** The sealed value format (v4, binary): round trips, binds to its token hash, names its key, never throws on bad input. */

const secret = () => randomBytes(32).toString('base64')
const HASH = 'a'.repeat(64)
const OTHER_HASH = 'b'.repeat(64)
const REASONS = ['not_found', 'expired', 'revoked', 'user_banned', 'user_deleted'] as const

function answer(overrides: { session?: Partial<ValidEntry['session']>; user?: Partial<ValidEntry['user']>; readAtMs?: number } = {}) {
  const userId = overrides.session?.userId ?? '06fb649b-5c77-4957-8365-79319071adef'
  const expiresAt = overrides.session?.expiresAt ?? '2026-12-02T19:31:54.142Z'
  return {
    valid: true,
    entry: {
      session: {
        id: '2a60d63d-8210-4d78-88d2-461b7d3e712e',
        createdAt: '2026-11-25T19:31:54.074Z',
        lastActivityAt: null,
        ...overrides.session,
        userId,
        expiresAt,
      },
      user: { email: 'ada@example.test', firstName: 'Ada', lastName: null, username: 'ada', ...overrides.user, id: userId },
      expiresAtMs: Date.parse(expiresAt),
      readAtMs: overrides.readAtMs ?? Date.parse('2026-12-02T18:31:54.142Z'),
    },
  } satisfies SessionAnswer
}
const valid = answer()

function codecWith(keys: Array<{ id: string; secret: string }>, memoEntries = 0) {
  const failures: Undecodable[] = []
  return { codec: createAnswerCodec(createCacheCipher(keys), { memoEntries, onUndecodable: (why) => failures.push(why) }), failures }
}

/** A cipher that counts its opens, to tell a memo hit from a decryption. */
function countingCipher(keys: Array<{ id: string; secret: string }>) {
  const inner = createCacheCipher(keys)
  const counts = { opens: 0 }
  const cipher: CacheCipher = {
    sealingKeyId: inner.sealingKeyId,
    seal: (format, plaintext, context) => inner.seal(format, plaintext, context),
    open: (sealed, context) => (counts.opens++, inner.open(sealed, context)),
  }
  return { cipher, counts }
}

describe('cache value codec v4 (binary, AES-256-GCM)', () => {
  it('round-trips valid and not-valid answers, with nothing personal in clear', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    const raw = codec.encode(HASH, valid)
    expect(Buffer.isBuffer(raw)).toBe(true)
    const clear = raw.toString('latin1')
    expect(clear).not.toMatch(/ada|Ada|example|2026-/)
    for (const id of [valid.entry.session.id, valid.entry.session.userId]) {
      expect(clear).not.toContain(id)
      expect(raw.includes(Buffer.from(id.replaceAll('-', ''), 'hex'))).toBe(false)
    }
    expect(codec.decode(HASH, raw)).toEqual(valid)
    for (const reason of REASONS) {
      const sealed = codec.encode(HASH, { valid: false, reason })
      expect(sealed.toString('latin1')).not.toContain(reason)
      expect(codec.decode(HASH, sealed)).toEqual({ valid: false, reason })
    }
    expect(failures).toEqual([])
  })

  it('lays a value out as [0x40 | key id length − 1][key id][iv][ciphertext][tag]', () => {
    const { codec } = codecWith([{ id: 'bench', secret: secret() }])
    const raw = codec.encode(HASH, { valid: false, reason: 'revoked' })
    expect(raw[0]).toBe((FORMAT << 4) | ('bench'.length - 1))
    expect(raw.toString('latin1', 1, 6)).toBe('bench')
    // A "not valid" answer: a one-byte reason, sealed.
    expect(raw.length).toBe(1 + 5 + 12 + 1 + 16)
  })

  it('round-trips the edges: nulls, every optional field, non-ASCII text, long emails, times before readAtMs and 1970', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    const cases: SessionAnswer[] = [
      answer({ user: { firstName: null, lastName: null, username: null } }),
      answer({ session: { lastActivityAt: '2026-12-02T18:00:00.001Z' }, user: { lastName: 'Lovelace' } }),
      answer({ session: { lastActivityAt: '1969-07-20T20:17:40.000Z', createdAt: '1970-01-01T00:00:00.000Z' } }),
      answer({ user: { email: `${'x'.repeat(300)}@example.test`, firstName: 'Zoë 李 🚀', lastName: 'Ødegård-Ñúñez', username: '' } }),
      answer({ user: { email: 'é'.repeat(20_000), firstName: '' } }),
      answer({ session: { createdAt: '2030-01-01T00:00:00.000Z' } }), // created after it was read (clock skew)
      answer({ session: { expiresAt: '+060000-01-01T00:00:00.000Z' } }), // ~58,000 years after readAtMs: still exact
    ]
    for (const a of cases) expect(codec.decode(HASH, codec.encode(HASH, a))).toEqual(a)
    expect(failures).toEqual([])
  })

  it('keeps ids that are not lowercase UUIDs exactly as they were (as text)', () => {
    const { codec } = codecWith([{ id: 'k1', secret: secret() }])
    for (const [id, userId] of [
      ['2A60D63D-8210-4D78-88D2-461B7D3E712E', '06fb649b-5c77-4957-8365-79319071adef'],
      ['s-1', 'u-1'],
      ['', 'ü'],
    ]) {
      const a = answer({ session: { id, userId } })
      expect(codec.decode(HASH, codec.encode(HASH, a))).toEqual(a)
    }
  })

  it('round-trips any answer the store could produce (property)', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    const time = fc.date({ min: new Date(-1e14), max: new Date(1e14), noInvalidDate: true }).map((d) => d.toISOString())
    const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 40 }))
    fc.assert(
      fc.property(
        fc.uuid(), fc.uuid(), time, time, fc.option(time), fc.integer({ min: 0, max: 4e12 }), fc.string({ maxLength: 300 }),
        fc.option(text), fc.option(text), fc.option(text),
        (id, userId, createdAt, expiresAt, lastActivityAt, readAtMs, email, firstName, lastName, username) => {
          const a = answer({ session: { id, userId, createdAt, expiresAt, lastActivityAt }, user: { email, firstName, lastName, username }, readAtMs })
          expect(codec.decode(HASH, codec.encode(HASH, a))).toEqual(a)
        },
      ),
      { numRuns: 300 },
    )
    expect(failures).toEqual([])
  })

  it('refuses to encode what it could not give back as it was (the fill fails, nothing wrong is cached)', () => {
    const { codec } = codecWith([{ id: 'k1', secret: secret() }])
    const odd = (a: SessionAnswer & { valid: true }, change: (e: ValidEntry) => void) => {
      const copy = structuredClone(a)
      change(copy.entry)
      return copy
    }
    expect(() => codec.encode(HASH, odd(valid, (e) => (e.session.createdAt = '2026-11-25T19:31:54Z')))).toThrow(/toISOString/)
    expect(() => codec.encode(HASH, odd(valid, (e) => (e.session.lastActivityAt = 'yesterday')))).toThrow(/toISOString/)
    expect(() => codec.encode(HASH, odd(valid, (e) => (e.expiresAtMs += 1)))).toThrow(/Date.parse/)
    expect(() => codec.encode(HASH, odd(valid, (e) => (e.user.id = randomUUID())))).toThrow(/userId/)
    expect(() => codec.encode(HASH, odd(valid, (e) => (e.readAtMs = 1.5)))).toThrow(/readAtMs/)
    // Beyond ±2^51 ms (~71,000 years) from readAtMs a time is not stored.
    expect(() => codec.encode(HASH, answer({ session: { expiresAt: '+275760-09-13T00:00:00.000Z' } }))).toThrow(/too far/)
    expect(() => codec.encode(HASH, { valid: false, reason: 'nope' as 'revoked' })).toThrow(/reason/)
  })

  it('uses a fresh IV each time: the same answer never seals to the same bytes', () => {
    const { codec } = codecWith([{ id: 'k1', secret: secret() }])
    expect(codec.encode(HASH, valid).equals(codec.encode(HASH, valid))).toBe(false)
  })

  it('binds a value to its token hash: moved onto another token\'s key, it does not open', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    const [a, b] = [hashToken(randomUUID()), hashToken(randomUUID())]
    expect(codec.decode(b, codec.encode(a, valid))).toBeNull()
    expect(codec.decode(b, codec.encode(a, { valid: false, reason: 'revoked' }))).toBeNull()
    expect(codec.decode(OTHER_HASH, codec.encode(HASH, valid))).toBeNull()
    expect(failures).toEqual(['rejected', 'rejected', 'rejected'])
  })

  it('does not open a value with any one byte flipped, wherever it is', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    for (const a of [valid, { valid: false, reason: 'revoked' } as const]) {
      const raw = codec.encode(HASH, a)
      for (let at = 0; at < raw.length; at++) {
        for (const mask of [0x01, 0x80]) {
          const bent = Buffer.from(raw)
          bent[at]! ^= mask
          expect(codec.decode(HASH, bent), `byte ${at} ^ ${mask}`).toBeNull()
        }
      }
    }
    // The first byte's high nibble is the format (malformed), its low nibble the key id's length (another key id).
    expect(new Set(failures)).toEqual(new Set(['malformed', 'unknown_key', 'rejected']))
  })

  it('seals with the first key and opens with any listed key; an unlisted key id is reported as unknown_key', () => {
    const k1 = { id: 'k1', secret: secret() }
    const k2 = { id: 'k2', secret: secret() }
    const old = codecWith([k1]).codec
    const rotating = codecWith([k2, k1]).codec
    const fresh = codecWith([k2])
    const sealedByOld = old.encode(HASH, valid)
    expect(rotating.decode(HASH, sealedByOld)).toEqual(valid)
    const sealedByNew = rotating.encode(HASH, valid)
    expect(sealedByNew.toString('latin1', 1, 3)).toBe('k2')
    expect(fresh.codec.decode(HASH, sealedByNew)).toEqual(valid)
    expect(fresh.codec.decode(HASH, sealedByOld)).toBeNull()
    // The same key id with other key material: not authentic.
    expect(codecWith([{ id: 'k1', secret: secret() }]).codec.decode(HASH, sealedByOld)).toBeNull()
    expect(fresh.failures).toEqual(['unknown_key'])
  })

  it('reads a format-3 value (JSON, left by an older instance) as a miss: malformed', () => {
    const { codec, failures } = codecWith([{ id: 'k1', secret: secret() }])
    const v3 = [
      `{"v":3,"sid":"${valid.entry.session.id}","uid":"${valid.entry.session.userId}","p":"k1.${randomBytes(180).toString('base64')}"}`,
      `{"v":3,"p":"k1.${randomBytes(40).toString('base64')}"}`,
    ]
    for (const value of v3) expect(codec.decode(HASH, Buffer.from(value))).toBeNull()
    expect(failures).toEqual(['malformed', 'malformed'])
  })

  it('never throws on garbage: every malformed input decodes to null, counted', () => {
    const k1 = { id: 'k1', secret: secret() }
    const { codec, failures } = codecWith([k1])
    const cipher = createCacheCipher([k1])
    const sealedPlain = (bytes: number[]) => cipher.seal(FORMAT, Buffer.from(bytes), HASH)
    const goodPlain = (() => {
      // The plaintext of a valid answer, to truncate and extend: opened with the cipher directly.
      const p = cipher.open(codec.encode(HASH, valid), HASH)
      if (typeof p === 'string') throw new Error(p)
      return [...p]
    })()
    const garbage: Buffer[] = [
      Buffer.alloc(0), Buffer.from([0x40]), Buffer.from('null'), Buffer.from('{}'), Buffer.from([0x40, 0x6b, 0x31]),
      Buffer.concat([Buffer.from([0x41]), Buffer.from('k1'), randomBytes(40)]),
      Buffer.concat([Buffer.from([0x3f]), randomBytes(60)]), randomBytes(200),
      // Authentic (sealed with the key, bound to HASH) but not a record: a sealed value is only as good as its parse.
      sealedPlain([]), sealedPlain([0]), sealedPlain([6]), sealedPlain([3, 3]), sealedPlain([0x80]), sealedPlain([0xff, ...goodPlain.slice(1)]),
      sealedPlain(goodPlain.slice(0, goodPlain.length - 1)), sealedPlain([...goodPlain, 0]), sealedPlain(goodPlain.slice(0, 20)),
      sealedPlain([0x80, ...new Array<number>(32).fill(0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
    ]
    for (const raw of garbage) expect(codec.decode(HASH, raw), raw.toString('hex')).toBeNull()
    expect(failures.length).toBe(garbage.length)
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => codec.decode(HASH, Buffer.from(bytes)) === null))
  })

  it('remembers what it sealed or opened, but only for the same bytes under the same token hash', () => {
    const k1 = { id: 'k1', secret: secret() }
    const { cipher, counts } = countingCipher([k1])
    const failures: Undecodable[] = []
    const codec = createAnswerCodec(cipher, { memoEntries: 100, onUndecodable: (why) => failures.push(why) })
    const raw = codec.encode(HASH, valid)
    // What it sealed answers without a decryption, from a copy of the bytes (as a read from Redis brings them).
    expect(codec.decode(HASH, Buffer.from(raw))).toEqual(valid)
    expect(counts.opens).toBe(0)
    // The same bytes under another hash (a value copied onto another key) go through the cipher, and fail.
    expect(codec.decode(OTHER_HASH, raw)).toBeNull()
    expect(counts.opens).toBe(1)
    // Different bytes with the same GCM tag (the memo's index): compared byte for byte, opened, and refused.
    const bent = Buffer.from(raw)
    bent[20]! ^= 1
    expect(codec.decode(HASH, bent)).toBeNull()
    expect(counts.opens).toBe(2)
    // ...and the remembered answer still serves the original bytes.
    expect(codec.decode(HASH, raw)).toEqual(valid)
    expect(counts.opens).toBe(2)
    expect(failures).toEqual(['rejected', 'rejected'])
    // A reader with a memo and one without give the same answers; the first open is remembered.
    const other = createAnswerCodec(createCacheCipher([k1]))
    const reader = countingCipher([k1])
    const remembering = createAnswerCodec(reader.cipher, { memoEntries: 100 })
    expect(other.decode(HASH, raw)).toEqual(valid)
    expect(remembering.decode(HASH, raw)).toEqual(valid)
    expect(remembering.decode(HASH, Buffer.from(raw))).toEqual(valid)
    expect(reader.counts.opens).toBe(1)
    expect(remembering.decode(OTHER_HASH, raw)).toBeNull()
  })

  it('keeps what it remembers in memory of its own: a full memo holds its values\' bytes, not the buffers they came in', () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as () => void
    const keys = [{ id: 'k1', secret: secret() }]
    const writer = createAnswerCodec(createCacheCipher(keys))
    const ENTRIES = 4000
    const values = Array.from({ length: ENTRIES }, (_, i) => ({ hash: hashToken(`memo-${i}`), raw: Buffer.from(writer.encode(hashToken(`memo-${i}`), valid)) }))
    gc()
    const before = process.memoryUsage().arrayBuffers
    const codec = createAnswerCodec(createCacheCipher(keys), { memoEntries: 2 * ENTRIES })
    for (const [i, { hash, raw }] of values.entries()) {
      // Read from Redis: the value is a slice of a 16 KiB socket chunk, which goes once the reply is handled.
      const chunk = Buffer.alloc(16 * 1024)
      raw.copy(chunk, 100)
      expect(codec.decode(hash, chunk.subarray(100, 100 + raw.length))).toEqual(valid)
      // Sealed for a fill: a small Buffer from Node's 8 KiB pool; the rest of that slab goes to garbage here.
      codec.encode(hashToken(`fill-${i}`), valid)
      Buffer.allocUnsafe(4000)
    }
    gc()
    const held = process.memoryUsage().arrayBuffers - before
    // 8,000 remembered values of ~230 B each: allowed 1 KiB apiece (room for what else the worker holds meanwhile). Each
    // pinning a pool slab or a socket chunk, they would hold several KiB apiece (this test measured 13.5 MB at 2,000).
    expect(held).toBeLessThan(2 * ENTRIES * 1024)
    expect(codec.decode(values[0]!.hash, values[0]!.raw)).toEqual(valid)
  })

  it('refuses bad key material up front', () => {
    expect(() => decodeKeySecret('k', 'too-short')).toThrow(/32 random bytes/)
    expect(() => decodeKeySecret('k', randomBytes(31).toString('base64'))).toThrow(/32 random bytes/)
    expect(decodeKeySecret('k', randomBytes(32).toString('base64url')).length).toBe(32)
    expect(() => createCacheCipher([])).toThrow(/at least one/)
    expect(() => createCacheCipher([{ id: 'a', secret: secret() }, { id: 'a', secret: secret() }])).toThrow(/twice/)
    expect(() => createCacheCipher([{ id: 'bad id', secret: secret() }])).toThrow(/must match/)
    expect(() => createCacheCipher([{ id: 'x'.repeat(17), secret: secret() }])).toThrow(/must match/)
  })
})
