import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { hashTag, readUuid, writeUuid } from '../../src/cache/compact-ids.js'
import { keyScheme } from '../../src/cache/keys.js'
import { hashToken } from '../../src/domain/token.js'

/** The key scheme's compact tags: exact, injective, one slot per script. */

/** What Redis Cluster hashes: the text between the first `{` and the next `}`, when not empty. */
function slotTag(key: string): string | null {
  const open = key.indexOf('{')
  const close = open < 0 ? -1 : key.indexOf('}', open + 1)
  return close > open + 1 ? key.slice(open + 1, close) : null
}

const keys = keyScheme('ssc:')
const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/)

describe('key scheme (compact tags)', () => {
  it('tags a token by base64url of its hash\'s first 96 bits', () => {
    fc.assert(
      fc.property(hex64, (hash) => {
        const tag = Buffer.from(hash.slice(0, 24), 'hex').toString('base64url')
        expect(hashTag(hash)).toBe(tag)
        expect(hashTag(hash.toUpperCase())).toBe(tag)
        expect(keys.entry(hash)).toBe(`ssc:e:{${tag}}`)
        expect(keys.tokenTombstone(hash)).toBe(`ssc:t:tok:{${tag}}`)
      }),
    )
  })

  it('keeps what is not a token hash verbatim behind `=`, which no tag contains: it never shares a hash\'s keys', () => {
    for (const odd of ['', 'abc', 'g'.repeat(64), `${'a'.repeat(63)}z`, `z${'a'.repeat(63)}`, `${'a'.repeat(24)}-${'a'.repeat(39)}`, 'a'.repeat(65)]) {
      expect(hashTag(odd)).toBe(`=${odd}`)
    }
    expect(hashTag(hashToken('x'))).not.toContain('=')
  })

  it('stores a UUID as its 16 bytes and reads it back in its canonical form', () => {
    const id = randomUUID()
    const bytes = Buffer.alloc(20)
    writeUuid(id, bytes, 3)
    expect(readUuid(bytes, 3)).toBe(id)
  })

  it('puts each script\'s keys on one slot, the token\'s whole tag', () => {
    fc.assert(
      fc.property(hex64, (hash) => {
        const tokenTag = slotTag(keys.entry(hash))
        expect(tokenTag).not.toBeNull()
        expect(slotTag(keys.tokenTombstone(hash))).toBe(tokenTag)
        for (const key of [keys.entry(hash), keys.tokenTombstone(hash)]) {
          // One `{`…`}` pair and nothing after it: the tag is all of the id.
          expect(key.endsWith('}')).toBe(true)
          expect(key.split('{')).toHaveLength(2)
        }
      }),
    )
  })

  it('keeps the one key a session holds within Redis\'s 32-byte name class at the default prefix (≤ 30 bytes)', () => {
    expect(keys.entry(hashToken('token'))).toHaveLength(24)
  })
})
