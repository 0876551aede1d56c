import type { SessionStore } from '../../src/domain/ports.js'
import type { InvalidationTarget, SessionRecord } from '../../src/domain/session.js'

/** Live (not long expired) sessions the target names, as the pg adapter selects them. */
function matches(target: InvalidationTarget, hash: string, r: SessionRecord): boolean {
  if (Date.parse(r.session.expiresAt) <= Date.now() - 60_000) return false
  return target.kind === 'token' ? hash === target.tokenHash : target.kind === 'session' ? r.session.id === target.sessionId : r.session.userId === target.userId
}

/** In-memory SessionStore, keyed by token hash, for unit tests; the contract suite holds it to the pg adapter's rules. */
export function createMemorySessionStore() {
  const records = new Map<string, SessionRecord>()
  let available = true
  let queries = 0

  const store: SessionStore = {
    async findByTokenHash(hash) {
      queries++
      if (!available) throw Object.assign(new Error('store down'), { code: 'SESSION_STORE_UNAVAILABLE', statusCode: 503 })
      return records.get(hash) ?? null
    },
    async revoke(target: InvalidationTarget) {
      if (!available) throw Object.assign(new Error('store down'), { code: 'SESSION_STORE_UNAVAILABLE', statusCode: 503 })
      let revoked = 0
      const tokenHashes: string[] = []
      for (const [hash, r] of records) {
        if (!matches(target, hash, r)) continue
        tokenHashes.push(hash)
        if (!r.revokedAt) {
          r.revokedAt = new Date()
          revoked++
        }
      }
      return { revoked, tokenHashes }
    },
    async tokenHashes(target: InvalidationTarget) {
      if (!available) throw Object.assign(new Error('store down'), { code: 'SESSION_STORE_UNAVAILABLE', statusCode: 503 })
      return [...records].filter(([hash, r]) => matches(target, hash, r)).map(([hash]) => hash)
    },
    async ping() {
      if (!available) throw new Error('store down')
    },
    async close() {},
  }
  return {
    store,
    put: (hash: string, record: SessionRecord) => records.set(hash, record),
    setAvailable: (value: boolean) => {
      available = value
    },
    queries: () => queries,
  }
}
