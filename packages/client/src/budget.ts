/**
 * A retry budget per client (Finagle's idea): retries in the last `windowMs` may not exceed `minRetries` plus `ratio`
 * of the calls made in that window. When the service is down, every caller retrying at once would multiply its load;
 * the budget caps the extra load at `ratio` once traffic is high, while a quiet client still gets its few retries.
 * The defaults are Finagle's RetryBudget defaults (20 %, 10 retries per second, 10 s window).
 */
export interface RetryBudgetOptions {
  /** Fraction of calls that may be retried (default 0.2). */
  ratio?: number
  /** Retries always allowed per window, however few calls (default 100: Finagle's 10 per second over its 10 s). */
  minRetries?: number
  /** Window in ms (default 10 000), counted in 10 slots. */
  windowMs?: number
}

const SLOTS = 10

export function createRetryBudget(options: RetryBudgetOptions = {}) {
  const ratio = options.ratio ?? 0.2
  const minRetries = options.minRetries ?? 100
  const slotMs = (options.windowMs ?? 10_000) / SLOTS
  const calls = new Array<number>(SLOTS).fill(0)
  const retries = new Array<number>(SLOTS).fill(0)
  let slot = Math.floor(Date.now() / slotMs)

  function advance(): number {
    const now = Math.floor(Date.now() / slotMs)
    for (let s = slot + 1; s <= now && s <= slot + SLOTS; s++) {
      calls[s % SLOTS] = 0
      retries[s % SLOTS] = 0
    }
    slot = Math.max(slot, now)
    return slot % SLOTS
  }
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0)

  return {
    call(): void {
      calls[advance()]!++
    },
    /** Takes one retry from the budget; false when it is spent. */
    tryRetry(): boolean {
      const i = advance()
      if (sum(retries) >= minRetries + ratio * sum(calls)) return false
      retries[i]!++
      return true
    },
  }
}

export type RetryBudget = ReturnType<typeof createRetryBudget>
