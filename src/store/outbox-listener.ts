import pg from 'pg'
import type { Log } from '../service/observer.js'

export type ListenerState = 'connecting' | 'listening' | 'lost' | 'closed'

export interface OutboxListenerOptions {
  connection: pg.ClientConfig
  channel: string
  /** Backoff between reconnection attempts: from minMs, doubling, capped at maxMs. */
  reconnectMinMs: number
  reconnectMaxMs: number
  /** A liveness query on the connection this often; a connection that cannot answer it is dropped and reopened. */
  heartbeatMs: number
  log: Log
  /** An outbox row id was announced. */
  onNotify(id: number): void
  /** LISTEN is in place (first time or after a reconnect): whatever was missed meanwhile is to be read now. */
  onListening(): void
  onLost(why: string): void
}

/**
 * The one dedicated (never pooled) connection that LISTENs for outbox ids. It must be a session-mode connection
 * (DATABASE_LISTEN_URL): through a transaction-mode pooler LISTEN silently hears nothing. On any loss it reconnects with
 * backoff and LISTENs again before telling the feed to catch up, so nothing committed in between is missed.
 */
export function startOutboxListener(options: OutboxListenerOptions) {
  const { log } = options
  let state: ListenerState = 'connecting'
  let client: pg.Client | undefined
  let backendPid: number | null = null
  let attempt = 0
  let retryTimer: NodeJS.Timeout | undefined
  let heartbeat: NodeJS.Timeout | undefined
  let closed = false
  const quotedChannel = `"${options.channel.replaceAll('"', '""')}"`

  function lose(why: string, from: pg.Client): void {
    if (from !== client || closed) return
    client = undefined
    backendPid = null
    clearInterval(heartbeat)
    from.removeAllListeners('notification')
    from.on('error', () => undefined) // a late error from the dead connection must not crash the process
    from.end().catch(() => undefined)
    if (state !== 'lost') log.warn({ why }, 'revocation listener lost its connection; reconnecting')
    state = 'lost'
    options.onLost(why)
    const delay = Math.min(options.reconnectMaxMs, options.reconnectMinMs * 2 ** attempt++)
    retryTimer = setTimeout(connect, delay)
    retryTimer.unref()
  }

  async function connect(): Promise<void> {
    if (closed) return
    // query_timeout bounds the heartbeat: a hung connection answers nothing, and must still be noticed.
    const next = new pg.Client({
      ...options.connection,
      application_name: 'studio-session-cache-listener',
      keepAlive: true,
      query_timeout: options.heartbeatMs,
    })
    client = next
    next.on('error', (err) => lose(err.message, next))
    next.on('end', () => lose('connection ended', next))
    next.on('notification', (message) => {
      if (message.channel !== options.channel || message.payload === undefined) return
      const id = Number(message.payload)
      if (Number.isSafeInteger(id) && id > 0) options.onNotify(id)
    })
    try {
      await next.connect()
      await next.query(`LISTEN ${quotedChannel}`)
    } catch (err) {
      lose((err as Error).message, next)
      return
    }
    if (next !== client || closed) return
    attempt = 0
    backendPid = (next as unknown as { processID: number | null }).processID ?? null
    if (state !== 'connecting') log.info({}, 'revocation listener reconnected')
    state = 'listening'
    heartbeat = setInterval(() => {
      next.query('SELECT 1').catch((err: Error) => lose(`heartbeat failed: ${err.message}`, next))
    }, options.heartbeatMs)
    heartbeat.unref()
    options.onListening()
  }

  void connect()

  return {
    get state(): ListenerState {
      return state
    },
    /** The listening backend's pid (pg_stat_activity), for operators and the tests that cut it. */
    get backendPid() {
      return backendPid
    },
    async close(): Promise<void> {
      closed = true
      state = 'closed'
      clearTimeout(retryTimer)
      clearInterval(heartbeat)
      const current = client
      client = undefined
      if (current) await current.end().catch(() => undefined)
    },
  }
}

export type OutboxListener = ReturnType<typeof startOutboxListener>
