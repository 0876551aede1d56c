/**
 * Run as a child process by tracing-bootstrap.test.ts: loads the tracing bootstrap the way server.ts does (from the
 * environment), then the app's modules, and prints which OpenTelemetry code ended up loaded. Never imported by tests.
 */
import { createRequire } from 'node:module'

await import('../../src/telemetry/tracing.js')
await import('../../src/app.js')
const { tracingHandle } = await import('../../src/telemetry/tracing-state.js')
// @opentelemetry/api is left out: prom-client imports it (for exemplars), and on its own it is a no-op facade.
const loaded = Object.keys(createRequire(import.meta.url).cache).filter(
  (path) =>
    /\/node_modules\/(@opentelemetry|@fastify\/otel|import-in-the-middle|require-in-the-middle)\//.test(path) &&
    !path.includes('/node_modules/@opentelemetry/api/'),
)
process.stdout.write(`${JSON.stringify({ started: tracingHandle() !== undefined, loaded })}\n`)
await tracingHandle()?.shutdown()
