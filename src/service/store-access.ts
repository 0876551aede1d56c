import type { Log } from './observer.js'

export type StoreAccessState = 'unknown' | 'ok' | 'misconfigured'

/** One thing the service's role cannot do, named so that an operator knows which grant or policy is missing. */
export interface StoreAccessProblem {
  check: string
  sqlstate: string | null
  detail: string
}

export interface StoreAccessDeps {
  /** Proves the role can do the service's work; throws when Postgres cannot be reached (which proves nothing). */
  check: () => Promise<{ role: string; problems: StoreAccessProblem[] }>
  /** Whether an error thrown by `check` is one no retry fixes (a wrong password, a missing database). */
  permanent: (err: unknown) => boolean
  log: Log
  /** While not proven, the check runs again this often (an operator's fix heals without a restart). */
  recheckMs: number
  /** How to fix it, for the log line (the role script's command for this role). */
  fix: (role: string) => string
  stateChanged?: (state: StoreAccessState) => void
}

/**
 * Whether the session store lets this service do its work. A missing grant or a row-level security policy that hides
 * rows is not an outage that passes: until it is fixed the instance is not ready and validations answer
 * SESSION_STORE_MISCONFIGURED (never valid:false, which is what a hidden row would otherwise become).
 *
 * Checked at start, again whenever Postgres comes back after connection trouble (it may be another server, restored
 * with other grants), after any query fails in a way no retry fixes, and every `recheckMs` until proven.
 */
export function createStoreAccessMonitor(deps: StoreAccessDeps) {
  let state: StoreAccessState = 'unknown'
  let problems: StoreAccessProblem[] = []
  let running: Promise<void> | undefined
  let suspect = false
  let timer: NodeJS.Timeout | undefined

  function settle(next: StoreAccessState, role: string, found: StoreAccessProblem[]): void {
    const before = state
    state = next
    problems = found
    if (next === 'misconfigured' && before !== 'misconfigured') {
      deps.log.error(
        { role, problems: found, fix: deps.fix(role) },
        `Postgres role "${role}" cannot do this service's work (${found.map((p) => p.check).join('; ')}): not ready, ` +
          'and /validate answers 500 SESSION_STORE_MISCONFIGURED until it can; grant it with ops/postgres/runtime-role.sql',
      )
    } else if (next === 'ok' && before === 'misconfigured') {
      deps.log.info({ role }, `Postgres role "${role}" can do this service's work again: ready`)
    }
    if (next !== before) deps.stateChanged?.(next)
  }

  async function checkOnce(): Promise<void> {
    try {
      const { role, problems: found } = await deps.check()
      settle(found.length === 0 ? 'ok' : 'misconfigured', role, found)
    } catch (err) {
      if (deps.permanent(err)) {
        settle('misconfigured', '(connection)', [
          { check: 'connect', sqlstate: (err as { code?: string }).code ?? null, detail: (err as Error).message },
        ])
      } else {
        // Postgres unreachable: nothing learned. Whatever was proven stays; the next success checks again.
        suspect = true
        deps.log.debug({ err: { message: (err as Error).message } }, 'store access check could not reach Postgres')
      }
    }
  }

  function run(): Promise<void> {
    running ??= checkOnce().finally(() => {
      running = undefined
    })
    return running
  }

  return {
    get state() {
      return state
    },
    get problems() {
      return problems
    },
    /** True only while the role is known not to be able to do the work. Unknown (Postgres down) is not refused. */
    refused: () => state === 'misconfigured',
    run,
    start(): Promise<void> {
      timer = setInterval(() => {
        if (state !== 'ok') void run()
      }, deps.recheckMs)
      timer.unref()
      return run()
    },
    stop() {
      clearInterval(timer)
    },
    /** A query or connection failed in a way that can heal: the next success checks again. */
    connectionTrouble() {
      suspect = true
    },
    querySucceeded() {
      if (!suspect) return
      suspect = false
      void run()
    },
    /** A query failed in a way no retry fixes (a grant revoked at run time): check at once. */
    permanentFailure() {
      void run()
    },
  }
}

export type StoreAccessMonitor = ReturnType<typeof createStoreAccessMonitor>
