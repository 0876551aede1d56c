/**
 * Whether the tracing bootstrap started the OpenTelemetry SDK in this process, and how to flush it. Kept on a global
 * symbol so that `node --import …/tracing.js` and server.ts's own import of it share one state, whatever module
 * instance each loaded. This file imports nothing: the app reads it without loading any OpenTelemetry code.
 */
export interface TracingHandle {
  readonly serviceName: string
  /** Flushes the spans still buffered and stops the SDK; never rejects. */
  shutdown(): Promise<void>
}

const KEY = Symbol.for('studio-session-cache.tracing')
const holder = globalThis as { [KEY]?: TracingHandle }

export function tracingHandle(): TracingHandle | undefined {
  return holder[KEY]
}

export function setTracingHandle(handle: TracingHandle | undefined): void {
  holder[KEY] = handle
}
