/** k6 provides a console (it prints to k6's log); @types/k6 does not declare it, and lib "dom" would bring far too much. */
declare const console: {
  log(...data: unknown[]): void
  info(...data: unknown[]): void
  warn(...data: unknown[]): void
  error(...data: unknown[]): void
  debug(...data: unknown[]): void
}
