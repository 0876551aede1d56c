/**
 * Default deadlines, derived from the service's own worst case with its default configuration. On a cache miss the
 * slowest path before the service answers 503 is about 5.75 s: REDIS_COMMAND_TIMEOUT_MS 0.25 s, then a wait of up to
 * DATABASE_LOOKUP_QUEUE_TIMEOUT_MS 1 s for a lookup slot, DATABASE_CONNECT_TIMEOUT_MS 2 s to connect and
 * DATABASE_STATEMENT_TIMEOUT_MS 2 s for the query plus the client-side query timer's 0.5 s margin. A deadline below
 * that would turn the service's typed 503 (with Retry-After) into a bare timeout; 6 s leaves 0.25 s for the network.
 * A service configured with longer timeouts needs a longer `deadlineMs`.
 */
export const SERVICE_WORST_CASE_MS = 5_750
export const DEFAULT_DEADLINE_MS = 6_000

/**
 * A revoke (`revoke: true`) keeps being retried until 200 or this deadline. It stays under the tombstone's default
 * life (CACHE_TOMBSTONE_TTL_SECONDS, 30 s): while the client still retries, no cache can answer `valid: true` for the
 * session, so a revoke that lands within this deadline is never preceded by a window where the session validated.
 */
export const DEFAULT_REVOKE_DEADLINE_MS = 20_000

/** Backoff between retries of a 503 (full jitter), never below the service's Retry-After. */
export const DEFAULT_BACKOFF_BASE_MS = 100
export const DEFAULT_BACKOFF_MAX_MS = 2_000
