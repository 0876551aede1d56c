import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Errors } from '../errors.js'

export type DrainOutcome = 'served' | 'turned_away'

export interface DrainOptions {
  /** SHUTDOWN_TIMEOUT_MS: the hard deadline, counted from begin() (or from close() when nothing began a drain). */
  timeoutMs: number
  counted(outcome: DrainOutcome): void
  log: FastifyBaseLogger
}

/**
 * What pools and the exit still need once the background writes have had their turn: a tenth of the deadline (1 s at
 * the default), never less than 100 ms.
 */
const closeReserveMs = (timeoutMs: number) => Math.max(100, Math.floor(timeoutMs / 10))

/**
 * The HTTP side of a graceful shutdown, in three phases:
 * - serving: nothing to do (the only cost on the hot path is one boolean read in wiring/http.ts's onRequest hook);
 * - draining (begin(), on SIGTERM): /health/ready answers 503 so load balancers stop routing here, while every request
 *   is still served, with `Connection: close` so keep-alive callers take their next request elsewhere;
 * - closing (Fastify's preClose): the listener stops accepting and idle keep-alive sockets are closed; requests in
 *   flight finish; a request that still arrives on an open connection (pipelined behind one in flight) is turned away
 *   with 503 SHUTTING_DOWN and Retry-After, so its caller retries on another instance instead of waiting on this one.
 * The drain is summed up in one log line once the listener has closed and the last in-flight request has finished.
 */
export function createDrain(app: FastifyInstance, options: DrainOptions) {
  let phase: 'serving' | 'draining' | 'closing' = 'serving'
  let startedAt: number | undefined
  let listening = false
  let served = 0
  let turnedAway = 0
  let inFlightAtClose = 0

  // Open connections, so the answers already in progress when the drain begins (their onRequest ran before it) can
  // be told to close their connection too. A listener per connection, not per request: nothing on the hot path.
  const sockets = new Set<Socket>()
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })

  /** Adds Connection: close to every answer still being worked on; returns how many there are. */
  function closeAfterCurrentAnswers(): number {
    let inProgress = 0
    for (const socket of sockets) {
      const res = answerInProgress(socket)
      if (!res) continue
      inProgress++
      if (!res.headersSent) res.setHeader('connection', 'close')
    }
    return inProgress
  }

  const start = () => (startedAt ??= Date.now())

  return {
    /** True from begin() or close() on: readiness is 503 and admit() must be asked. */
    get active(): boolean {
      return phase !== 'serving'
    },

    /** onRequest while active: sets Connection: close, and returns the error to answer with once closing. */
    admit(request: FastifyRequest, reply: FastifyReply): FastifyError | undefined {
      reply.header('connection', 'close')
      // Pipelined behind an answer still in progress on the same connection: that earlier answer must not close the
      // connection (Node would drop this one's answer, queued behind it); the last answer closes it.
      const earlier = answerInProgress(request.raw.socket)
      if (earlier && earlier !== reply.raw && !earlier.headersSent) earlier.removeHeader('connection')
      // Probes keep answering (readiness says 503 from the first moment) and are not counted as traffic.
      if (request.url.startsWith('/health/')) return undefined
      if (phase === 'draining') {
        served++
        options.counted('served')
        return undefined
      }
      turnedAway++
      options.counted('turned_away')
      return new Errors.ShuttingDown()
    },

    /** SIGTERM: readiness turns 503 at once; requests are still served until close(). */
    begin(): void {
      if (phase !== 'serving') return
      start()
      phase = 'draining'
      closeAfterCurrentAnswers()
    },

    /** Fastify's preClose: from here on new requests are turned away; counts the requests still in flight. */
    closing(done: () => void): void {
      start()
      phase = 'closing'
      listening = app.server.listening
      // Right after this hook Fastify closes the listener and the idle keep-alive sockets; these answers close theirs.
      if (listening) inFlightAtClose = closeAfterCurrentAnswers()
      done()
    },

    /** The first onClose hook: the listener is closed and every in-flight request answered. Logs the drain once. */
    closed(): void {
      if (!listening) return
      options.log.info(
        { drainMs: Date.now() - (startedAt ?? Date.now()), served, turnedAway, inFlightAtClose },
        'drain complete: listener closed, in-flight requests answered',
      )
    },

    /**
     * Time left for background writes: the deadline (SHUTDOWN_TIMEOUT_MS from the start of the drain) minus what is
     * spent, minus a reserve for closing the pools. Never negative.
     */
    writesBudgetMs(): number {
      const deadline = start() + options.timeoutMs
      return Math.max(0, deadline - Date.now() - closeReserveMs(options.timeoutMs))
    },
  }
}

export type Drain = ReturnType<typeof createDrain>

/** Node's ServerResponse currently bound to a socket (null between requests): long-standing, if underscored. */
function answerInProgress(socket: Socket | null | undefined): ServerResponse | null | undefined {
  return (socket as (Socket & { _httpMessage?: ServerResponse | null }) | null | undefined)?._httpMessage
}

/** Waits for `task` at most `budgetMs`; true when it finished in time. The timer never holds the process open. */
export function within(task: Promise<unknown>, budgetMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), budgetMs)
    timer.unref()
  })
  return Promise.race([task.then(() => true), expired]).finally(() => clearTimeout(timer))
}
