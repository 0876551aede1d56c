import type { Log } from '../service/observer.js'

export interface PollerOptions {
  name: string
  intervalMs: number
  /** Upper bound on one run: a run still going after it is abandoned (and reported as failed). */
  timeoutMs: number
  /** One poll. Resolving 'stop' ends the polling (for good: the poller is not permitted, say). */
  run: () => Promise<void | 'stop'>
  /** Run at once (default), or only after the first interval. */
  immediate?: boolean
  /** Told about a run that failed or timed out; must not throw. */
  failed?: (err: unknown) => void
  log: Log
}

export interface Poller {
  /** Clears the timer and waits for a run in progress (at most timeoutMs). */
  stop(): Promise<void>
}

/**
 * Runs a task now and then every intervalMs after the previous run ended, so runs never overlap and a slow
 * dependency cannot pile them up. The timer is unref'd (it never holds the process open), a run is bounded by
 * timeoutMs, and nothing a run does can throw out of here. Never called from a request.
 */
export function startPoller(options: PollerOptions): Poller {
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  let stopped = false

  function schedule(): void {
    if (stopped) return
    timer = setTimeout(tick, options.intervalMs)
    timer.unref()
  }

  function tick(): void {
    let deadline: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_resolve, reject) => {
      deadline = setTimeout(() => reject(new Error(`${options.name} poll timed out after ${options.timeoutMs} ms`)), options.timeoutMs)
      deadline.unref()
    })
    let work: Promise<void | 'stop'>
    try {
      work = options.run()
    } catch (err) {
      work = Promise.reject(err)
    }
    running = Promise.race([work, timedOut])
      .then(
        (outcome) => {
          if (outcome === 'stop') stopped = true
        },
        (err: unknown) => {
          try {
            options.failed?.(err)
          } catch {
            // a reporter that throws must not stop the poller
          }
          options.log.debug({ err: { message: (err as Error)?.message }, poller: options.name }, 'poll failed')
        },
      )
      .finally(() => {
        clearTimeout(deadline)
        running = undefined
        schedule()
      })
  }

  if (options.immediate === false) schedule()
  else tick()
  return {
    async stop() {
      stopped = true
      clearTimeout(timer)
      await running
    },
  }
}
