/**
 * Compact forms of the ids the cache stores, for the value codec (codec.ts): a UUID (8-4-4-4-12 hex) → 16 bytes.
 */

/** Lowercase, as Postgres prints a uuid: only these are stored as 16 bytes in values (they must decode as given). */
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

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
