import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyUnderPressureOptions } from '@fastify/under-pressure'
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { Errors } from '../errors.js'
import { lazyChildLoggerFactory } from '../telemetry/lazy-child-logger.js'

const REQUEST_ID = /^[\w.:-]{1,128}$/

/** Honours a caller's x-request-id when it is safe to log; otherwise makes one. */
function requestId(req: IncomingMessage): string {
  const header = req.headers['x-request-id']
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID()
}

/**
 * The Fastify instance as the service runs it, routes aside: logger, request ids, limits and timeouts. The benchmark
 * builds its "framework" target with it too, so what this setup costs per request is measured, not guessed.
 */
export function createFastify(config: Config, logger: Logger) {
  return Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    childLoggerFactory: lazyChildLoggerFactory,
    // No per-request lines at info: they cost throughput on the hot path; debug turns them on (wiring/http.ts).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    requestIdHeader: false,
    genReqId: requestId,
    bodyLimit: config.http.bodyLimitBytes,
    // A client that trickles its request (slowloris) is cut off after this.
    requestTimeout: config.http.requestTimeoutMs,
    // Our own onRequest check answers SHUTTING_DOWN (with code and Retry-After) instead of Fastify's bare 503.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>()
}

/**
 * @fastify/under-pressure's options for the session routes (503 OVERLOADED while the event loop lags), or undefined
 * when both limits are off: the plugin's event-loop histogram is never disabled once on, so it is not registered then.
 */
export function loadSheddingOptions(config: Config): FastifyUnderPressureOptions | undefined {
  const { maxEventLoopDelayMs, maxEventLoopUtilization, sampleIntervalMs } = config.loadShedding
  if (maxEventLoopDelayMs <= 0 && maxEventLoopUtilization <= 0) return undefined
  return {
    maxEventLoopDelay: maxEventLoopDelayMs,
    maxEventLoopUtilization,
    // Utilisation over the last sample, not since start-up (the default), so shedding stops when the load does.
    eventLoopUtilizationMode: 'interval',
    sampleInterval: sampleIntervalMs,
    retryAfter: config.http.retryAfterSeconds,
    customError: Errors.Overloaded,
  }
}
