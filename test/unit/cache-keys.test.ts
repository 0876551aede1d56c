import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { hashTag, readUuid, uuidTag, writeUuid } from '../../src/cache/compact-ids.js'
import { keyScheme } from '../../src/cache/keys.js'
import { hashToken } from '../../src/domain/token.js'

/** The key scheme's compact tags: exact, injective, one slot per script, and what an index member names. */

/** What Redis Cluster hashes: the text between the first `{` and the next `}`, when not empty. */
function slotTag(key: string): string | null {
  const open = key.indexOf('{')
  const close = open < 0 ? -1 : key.indexOf('}', open + 1)
  return close > open + 1 ? key.slice(open + 1, close) : null
}

const keys = keyScheme('ssc:')
const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/)

describe('key scheme (compact tags)', () => {
  it('tags a token by base64url of its hash\'s first 96 bits, the same bytes its index members hold', () => {
    fc.assert(
      fc.property(hex64, (hash) => {
        const tag = Buffer.from(hash.slice(0, 24), 'hex').toString('base64url')
        expect(hashTag(hash)).toBe(tag)
        expect(hashTag(hash.toUpperCase())).toBe(tag)
        expect(keys.entry(hash)).toBe(`ssc:e:{${tag}}`)
        expect(keys.tokenTombstone(hash)).toBe(`ssc:t:tok:{${tag}}`)
        const member = keys.indexMember(hash)
        expect(member.length).toBe(12)
        // A token found in an index (DROP_OWNER returns its member) names the very keys its hash names.
        expect(keys.entryOfMember(member)).toBe(keys.entry(hash))
        expect(keys.tokenTombstoneOfMember(member)).toBe(keys.tokenTombstone(hash))
      }),
    )
  })

  it('keeps what is not a token hash verbatim behind `=`, which no tag contains: it never shares a hash\'s keys', () => {
    for (const odd of ['', 'abc', 'g'.repeat(64), `${'a'.repeat(63)}z`, `z${'a'.repeat(63)}`, `${'a'.repeat(24)}-${'a'.repeat(39)}`, 'a'.repeat(65)]) {
      expect(hashTag(odd)).toBe(`=${odd}`)
    }
    expect(() => keys.indexMember('g'.repeat(64))).toThrow(/64 hexadecimal/)
    expect(hashTag(hashToken('x'))).not.toContain('=')
  })

  it('tags a session or user by base64url of the UUID\'s 16 bytes, whatever its case; anything else verbatim behind `=`', () => {
    const id = randomUUID()
    const tag = Buffer.from(id.replaceAll('-', ''), 'hex').toString('base64url')
    expect(tag).toHaveLength(22)
    expect(uuidTag(id)).toBe(tag)
    expect(uuidTag(id.toUpperCase())).toBe(tag)
    expect(keys.sessionIndex(id)).toBe(`ssc:s:{${tag}}`)
    expect(keys.sessionTombstone(id.toUpperCase())).toBe(`ssc:t:sid:{${tag}}`)
    expect(keys.userIndex(id)).toBe(`ssc:u:{${tag}}`)
    expect(keys.userTombstone(id)).toBe(`ssc:t:uid:{${tag}}`)
    expect(uuidTag('s1')).toBe('=s1')
    expect(uuidTag(`urn:uuid:${id}`)).toBe(`=urn:uuid:${id}`)
    const bytes = Buffer.alloc(20)
    writeUuid(id, bytes, 3)
    expect(readUuid(bytes, 3)).toBe(id)
  })

  it('puts each script\'s keys on one slot, and never two owners or tokens on one tag', () => {
    fc.assert(
      fc.property(hex64, fc.uuid(), fc.uuid(), (hash, sessionId, userId) => {
        const tokenTag = slotTag(keys.entry(hash))
        expect(tokenTag).not.toBeNull()
        expect(slotTag(keys.tokenTombstone(hash))).toBe(tokenTag)
        expect(slotTag(keys.sessionIndex(sessionId))).toBe(slotTag(keys.sessionTombstone(sessionId)))
        expect(slotTag(keys.userIndex(userId))).toBe(slotTag(keys.userTombstone(userId)))
        for (const key of [keys.entry(hash), keys.sessionIndex(sessionId), keys.userIndex(userId)]) {
          // One `{`…`}` pair and nothing after it: the tag is all of the id.
          expect(key.endsWith('}')).toBe(true)
          expect(key.split('{')).toHaveLength(2)
        }
      }),
    )
  })

  it('keeps the three keys a session holds within Redis\'s 32-byte name class at the default prefix (≤ 30 bytes)', () => {
    const hash = hashToken('token')
    const id = randomUUID()
    expect(keys.entry(hash)).toHaveLength(24)
    expect(keys.sessionIndex(id)).toHaveLength(30)
    expect(keys.userIndex(id)).toHaveLength(30)
  })
})
