import type { RedisClient } from '../redis/client.js'
import type { InvalidationTarget } from '../domain/session.js'
import type { Log } from '../service/observer.js'
import type { LocalSessionCache } from './local-session-cache.js'

const KINDS = { tok: 'token', sid: 'session', uid: 'user' } as const

/** Messages are `<kind>:<id>` (tok:<hash>, sid:<uuid>, uid:<uuid>), published by the invalidation script itself. */
export function parseInvalidation(message: string): InvalidationTarget | null {
  const at = message.indexOf(':')
  const kind = KINDS[message.slice(0, at) as keyof typeof KINDS]
  const id = message.slice(at + 1)
  if (!kind || id.length === 0) return null
  if (kind === 'token') return { kind, tokenHash: id }
  return kind === 'session' ? { kind, sessionId: id } : { kind, userId: id }
}

/**
 * Every instance hears every invalidation, whichever instance (or outbox event) made it: a dedicated subscriber
 * connection bumps the single-flight epoch (so no request joins a read older than an invalidation it follows) and,
 * when there is an L1 tier, evicts from it. The L1 tier answers only while the subscription is live; on any loss it
 * is emptied and suspended, and it resumes (empty) once subscribed again.
 */
export function startInvalidationFeed(
  subscriber: RedisClient,
  channel: string,
  local: LocalSessionCache | undefined,
  log: Log,
  onInvalidation: () => void,
) {
  const lose = (why: string) => {
    if (local?.active) log.warn({ why }, 'L1 cache suspended: invalidation feed lost')
    local?.suspend()
  }
  subscriber.on('message', (ch: string, message: string) => {
    if (ch !== channel) return
    const target = parseInvalidation(message)
    if (target) local?.evict([target])
    else local?.suspend() // an unreadable message could have been an invalidation: drop everything to be safe
    onInvalidation()
  })
  subscriber.on('close', () => lose('connection closed'))
  subscriber.on('reconnecting', () => lose('reconnecting'))
  subscriber.on('ready', () => {
    subscriber
      .subscribe(channel)
      .then(() => {
        if (!local) return
        local.resume()
        log.info({}, 'L1 cache active: subscribed to the invalidation feed')
      })
      .catch((err: unknown) => lose(`subscribe failed: ${(err as Error).message}`))
  })
  if (subscriber.status === 'wait') subscriber.connect().catch(() => undefined)
}
