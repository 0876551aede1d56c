/**
 * One benchmark target, run as its own process so it has the event loop to itself:
 *   bare        Fastify, same schemas, a constant valid answer (the framework's ceiling)
 *   framework   the service's Fastify setup (logger, request ids and their header, load shedding, limits), same schemas,
 *               the constant answer: what the setup costs before any cache work
 *   lean-redis  Fastify + SHA-256 + one autopipelined ioredis GET, no pool/breaker/metrics (the DESIGN's lean path)
 *   lean-l1     the framework target + SHA-256 + a Map lookup of that session's answer, sent at the turn's end as
 *               the service sends L1 answers: the floor of an L1 hit
 *   pg-only     the full service with a cache that never hits (the no-cache baseline)
 *   service     the full service (pool, breaker, metrics, logging at the default level)
 * Configuration comes from the environment, through loadConfig like the real server.
 */
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { buildApp } from '../../src/app.js'
import { createCacheCipher } from '../../src/cache/cipher.js'
import { createAnswerCodec } from '../../src/cache/codec.js'
import { keyScheme } from '../../src/cache/keys.js'
import { loadConfig } from '../../src/config.js'
import type { SessionCache } from '../../src/domain/ports.js'
import { hashToken } from '../../src/domain/token.js'
import underPressure from '@fastify/under-pressure'
import pino from 'pino'
import { createFastify, loadSheddingOptions } from '../../src/http/fastify-setup.js'
import { createTurnBarrier } from '../../src/http/turn-barrier.js'
import { ErrorResponse, ValidateBody, ValidateResponse } from '../../src/http/schemas.js'
import { loggerOptions } from '../../src/telemetry/logger.js'
import { bareApp, constantAnswer } from './bare-route.js'

const mode = process.argv[2] ?? 'service'
const config = loadConfig()

async function bare() {
  return bareApp(config.http.tokenMaxLength)
}

type ValidateHandler = (request: { body: unknown }) => Promise<unknown>

/** The service's Fastify setup (createFastify, the request-id header, load shedding) around one /validate handler. */
async function withServiceSetup(handler: ValidateHandler) {
  const app = createFastify(config, pino(loggerOptions(config.log)))
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })
  await app.register(async (sessions) => {
    const shedding = loadSheddingOptions(config)
    if (shedding) await sessions.register(underPressure, shedding)
    sessions.post(
      '/validate',
      { schema: { body: ValidateBody(config.http.tokenMaxLength), response: { 200: ValidateResponse, '4xx': ErrorResponse, '5xx': ErrorResponse } } },
      handler,
    )
  })
  return app
}

async function framework() {
  return withServiceSetup(async () => constantAnswer)
}

/**
 * What an L1 hit cannot avoid on top of the service's Fastify setup: hash the token, look its answer up in process
 * memory (one object per session, as the L1 tier holds), build the response from it, sent with its turn's other
 * answers as the service sends L1 answers (http/turn-barrier.ts). Against "service: hit, L1 on" it shows what the
 * service adds around that lookup (the trust check, metrics, the tier's TTL bookkeeping, its re-reads from Redis as
 * answers expire).
 */
async function leanL1() {
  type Held = { valid: true; entry: { session: typeof constantAnswer.session; user: typeof constantAnswer.user } }
  const held = new Map<string, Held>()
  const endOfTurn = createTurnBarrier()
  return withServiceSetup(async (request) => {
    const hash = hashToken((request.body as { token: string }).token)
    let answer = held.get(hash)
    if (!answer) held.set(hash, (answer = { valid: true, entry: { session: { ...constantAnswer.session }, user: { ...constantAnswer.user } } }))
    await endOfTurn()
    return { valid: true, session: answer.entry.session, user: answer.entry.user, source: 'l1' }
  })
}

async function leanRedis() {
  const app = Fastify({ logger: false })
  const redis = new Redis(config.redis.url, { enableAutoPipelining: true })
  const keys = keyScheme(config.redis.keyPrefix)
  // Values are sealed (AES-256-GCM): the lean path opens them as the service does (remembering what it opened).
  const codec = createAnswerCodec(createCacheCipher(config.cache.encryptionKeys), { memoEntries: config.cache.decryptMemoEntries })
  app.post('/validate', { schema: { body: ValidateBody(config.http.tokenMaxLength), response: { 200: ValidateResponse } } }, async (request) => {
    const hash = hashToken((request.body as { token: string }).token)
    const raw = await redis.getBuffer(keys.entry(hash))
    const answer = raw ? codec.decode(hash, raw) : null
    if (answer?.valid) return { valid: true, session: answer.entry.session, user: answer.entry.user, source: 'redis' }
    return { valid: false, reason: 'not_found' }
  })
  app.addHook('onClose', async () => redis.disconnect())
  return app
}

const neverHits = (cache: SessionCache): SessionCache => ({
  ...cache,
  get: async () => null,
  fill: async () => 'written',
  extend: async () => undefined,
})

const app =
  mode === 'bare' ? await bare()
  : mode === 'framework' ? await framework()
  : mode === 'lean-redis' ? await leanRedis()
  : mode === 'lean-l1' ? await leanL1()
  : await buildApp(config, mode === 'pg-only' ? { wrapCache: neverHits } : {})

await app.listen({ host: '127.0.0.1', port: config.port })
const allocations = process.env.BENCH_ALLOCATION_PROFILE ? await sampleAllocations(process.env.BENCH_ALLOCATION_PROFILE) : undefined
process.stdout.write(`READY ${mode}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void (allocations?.() ?? Promise.resolve())
      .then(() => app.close())
      .then(() => process.exit(0))
  })
}

/**
 * --allocations in run.ts: V8's sampling heap profiler, keeping samples of objects that young- and old-generation
 * collections have already freed, so the profile shows where the hot path allocates (what the GC then has to clean),
 * not only what is alive at the end. Open the .heapprofile in Chrome DevTools or read it with any script.
 */
async function sampleAllocations(file: string): Promise<() => Promise<void>> {
  const { Session } = await import('node:inspector/promises')
  const { writeFileSync } = await import('node:fs')
  const session = new Session()
  session.connect()
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  })
  return async () => {
    const { profile } = await session.post('HeapProfiler.stopSampling')
    writeFileSync(file, JSON.stringify(profile))
    session.disconnect()
  }
}
