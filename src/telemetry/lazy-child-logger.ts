import type { Bindings, ChildLoggerOptions, Level, Logger } from 'pino'

type LogFn = (...args: unknown[]) => void

/**
 * Fastify gives every request its own child logger. A pino child serialises (and redacts) its bindings when it is
 * made, which costs several microseconds on every request of the hot path, although most requests never log a line.
 * This stand-in makes the real child only when a line is actually written at an enabled level; the line itself is
 * exactly what the real child would have written.
 */
class LazyChildLogger {
  #child: Logger | undefined
  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
    private readonly options: ChildLoggerOptions | undefined,
  ) {}

  #real(): Logger {
    return (this.#child ??= this.parent.child(this.bindings, this.options))
  }

  #write(level: Level, args: unknown[]): void {
    if (this.parent.isLevelEnabled(level)) (this.#real()[level] as LogFn)(...args)
  }

  get level(): string {
    return this.#child?.level ?? this.parent.level
  }
  set level(value: string) {
    this.#real().level = value
  }
  isLevelEnabled(level: string): boolean {
    return (this.#child ?? this.parent).isLevelEnabled(level)
  }
  fatal(...args: unknown[]) {
    this.#write('fatal', args)
  }
  error(...args: unknown[]) {
    this.#write('error', args)
  }
  warn(...args: unknown[]) {
    this.#write('warn', args)
  }
  info(...args: unknown[]) {
    this.#write('info', args)
  }
  debug(...args: unknown[]) {
    this.#write('debug', args)
  }
  trace(...args: unknown[]) {
    this.#write('trace', args)
  }
  silent() {}
  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.#real().child(bindings, options)
  }
}

/** Fastify's childLoggerFactory option. */
export function lazyChildLoggerFactory(logger: unknown, bindings: Bindings, options: ChildLoggerOptions | undefined): never {
  return new LazyChildLogger(logger as Logger, bindings, options) as never
}
