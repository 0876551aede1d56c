import type { Log } from '../service/observer.js'

/** What told this instance that Redis may be back. */
export type RecoverySignal = 'switch' | 'reconnect' | 'subscriber' | 'retry'

/** The parts of the breaker (opossum) that recovery drives. */
export interface RecoverableBreaker {
  readonly opened: boolean
  close(): void
  on(event: 'open' | 'close' | 'halfOpen', listener: () => void): unknown
  off(event: 'open' | 'close' | 'halfOpen', listener: () => void): unknown
}

export interface RecoveryOptions {
  /** The breaker's own reset timer: signal-driven probes never back off further than it (it probes anyway). */
  resetTimeoutMs: number
  /** First backoff after a failed probe or a flap; doubles with each one in a row. */
  baseBackoffMs: number
  /** A breaker that re-opens within this long of a probe closing it has flapped: the next probe backs off more. */
  stableMs: number
}

export interface RecoveryObserver {
  /** A probe started (the breaker is, in effect, half-open for it). */
  probing(signal: RecoverySignal): void
  probed(signal: RecoverySignal, ok: boolean): void
}

export interface RecoveryDeps {
  breaker: RecoverableBreaker
  /** Resolves when Redis answers on every pooled connection (bounded by its own deadline); rejects otherwise. */
  probe(): Promise<void>
  observer: RecoveryObserver
  log: Log
  options: RecoveryOptions
  now?: () => number
}

/**
 * Ends the breaker's open state as soon as something says Redis is back, instead of waiting out
 * BREAKER_RESET_TIMEOUT_MS (15 s by default, long after a Sentinel has announced a new master or a restarted node
 * accepts connections). A signal (a master switch, a pooled connection or the subscriber becoming ready) while the
 * breaker is open starts a probe at once; a probe that succeeds closes the breaker, one that fails leaves it open.
 *
 * Flapping is damped: after a failed probe, or a breaker that re-opened within `stableMs` of a probe closing it, the
 * next probe waits a backoff (baseBackoffMs doubling, at most the reset timeout, when opossum's own half-open trial
 * is as fast). A signal during the backoff is not lost: its probe runs when the backoff ends. Once a signal has come,
 * the probes go on by themselves ('retry') until one closes the breaker: a flap leaves every connection up, so no
 * new signal would come. One probe at a time; a signal during one runs one more after it.
 */
export function createRecovery(deps: RecoveryDeps) {
  const { breaker, observer, log, options } = deps
  const now = deps.now ?? Date.now
  let probing = false
  let again: RecoverySignal | undefined
  let failures = 0
  let flaps = 0
  let notBefore = 0
  let closedByProbeAt: number | undefined
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const waiters = new Set<() => void>()

  const backoffMs = () => Math.min(options.resetTimeoutMs, options.baseBackoffMs * 2 ** Math.max(0, failures + flaps - 1))

  const onOpen = () => {
    if (closedByProbeAt !== undefined && now() - closedByProbeAt < options.stableMs) {
      flaps++
      notBefore = now() + backoffMs()
      log.warn({ flaps, backoffMs: backoffMs() }, 'redis breaker re-opened soon after a recovery probe closed it: the next probe backs off')
      // Redis answered a moment ago: no new signal may come (every connection is up), so the next probe is due anyway.
      signal_('retry')
    } else {
      flaps = 0
    }
    closedByProbeAt = undefined
  }
  // Closed by a probe, or half-open by the breaker's own timer (its trial call may be the one waiting).
  const onUsable = () => {
    for (const wake of waiters) wake()
    waiters.clear()
  }
  breaker.on('open', onOpen)
  breaker.on('close', onUsable)
  breaker.on('halfOpen', onUsable)

  async function probe(signal: RecoverySignal): Promise<void> {
    probing = true
    observer.probing(signal)
    let ok = false
    try {
      await deps.probe()
      ok = true
    } catch (err) {
      log.debug({ err: { message: (err as Error).message }, signal }, 'redis recovery probe failed; the breaker stays open')
    } finally {
      probing = false
    }
    observer.probed(signal, ok)
    if (stopped) return
    if (ok) {
      failures = 0
      if (breaker.opened) {
        closedByProbeAt = now()
        log.info({ signal }, 'redis recovery probe answered: closing the breaker before its reset timeout')
        breaker.close()
      }
    } else {
      failures++
      notBefore = now() + backoffMs()
    }
    const next = again ?? (ok ? undefined : 'retry')
    again = undefined
    // A failed probe is tried again after its backoff, whatever signals come (at most the reset timeout apart).
    if (next !== undefined) signal_(next)
  }

  function signal_(signal: RecoverySignal): void {
    if (stopped || !breaker.opened) return
    if (probing) {
      again = signal
      return
    }
    const wait = notBefore - now()
    if (wait <= 0) {
      void probe(signal)
      return
    }
    if (timer) return
    timer = setTimeout(() => {
      timer = undefined
      signal_(signal)
    }, wait)
    timer.unref()
  }

  return {
    /** Something says Redis may be back: probe now (or when the backoff ends), if the breaker is open. */
    signal: signal_,
    /**
     * Resolves once the breaker is not open (at once if it is not), or after `waitMs`, whichever is first: how the
     * replay after a master switch runs right after the probe that closes the breaker.
     */
    whenUsable(waitMs: number): Promise<void> {
      if (!breaker.opened || stopped) return Promise.resolve()
      return new Promise((resolve) => {
        const done = () => {
          clearTimeout(t)
          waiters.delete(done)
          resolve()
        }
        const t = setTimeout(done, waitMs)
        t.unref()
        waiters.add(done)
      })
    },
    stop(): void {
      stopped = true
      clearTimeout(timer)
      breaker.off('open', onOpen)
      breaker.off('close', onUsable)
      breaker.off('halfOpen', onUsable)
      for (const wake of waiters) wake()
      waiters.clear()
    },
  }
}

export type Recovery = ReturnType<typeof createRecovery>
