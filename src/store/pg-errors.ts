/**
 * Which Postgres failures can heal by themselves and which cannot. A 503 with Retry-After promises the caller that
 * trying again may work; that is true of a refused or reset connection, a timeout, a server shutting down or a full
 * pool, and false of a missing privilege or column, which answers the same way on every retry until an operator acts.
 */
export type PgFailureKind = 'transient' | 'permanent'

/**
 * SQLSTATE classes that no retry fixes (https://www.postgresql.org/docs/current/errcodes-appendix.html):
 * 42 (syntax error or access rule violation: 42501 insufficient_privilege, which row-level security also raises on a
 * write, 42703 undefined_column, 42P01 undefined_table, 42883 undefined_function), 28 (invalid authorization: a wrong
 * role or password), 3D (the database does not exist), 3F (the schema does not exist).
 */
const PERMANENT_CLASSES = new Set(['42', '28', '3D', '3F'])

/** The SQLSTATE of a pg error (a 5-character code), or undefined for a network or client-side failure. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

/** Everything that is not known to be permanent is transient: an unknown failure must stay a 503, never an answer. */
export function classifyPgFailure(err: unknown): PgFailureKind {
  const state = sqlState(err)
  return state !== undefined && PERMANENT_CLASSES.has(state.slice(0, 2)) ? 'permanent' : 'transient'
}
