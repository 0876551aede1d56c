import { Writable } from 'node:stream'

/** A pino destination that keeps every line, so tests can assert what was (and was not) logged. */
export function captureLogs() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter((l: string) => l.length > 0))
      done()
    },
  })
  return {
    stream,
    lines,
    entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => lines.join('\n'),
  }
}
