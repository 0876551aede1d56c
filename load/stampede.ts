/**
 * Stampede: 100 concurrent validations of ONE token that nothing has cached yet, ROUNDS times with a fresh token each
 * round. Single-flight must collapse each stampede into one Postgres query, and every one of the 100 must still get
 * the right answer. Run it alone against an otherwise idle instance: the Postgres query count is read from /metrics
 * before and after.
 *
 *   psql ... -f load/seed.sql           # seeds k6-stampede-1 .. k6-stampede-1000 (never read by other scenarios)
 *   k6 run load/stampede.ts             # CONCURRENCY=100 ROUNDS=20
 *
 * Each run starts at a random offset in the stampede pool, so a token a recent run cached (for CACHE_TTL_SECONDS) is
 * unlikely to be reused; set STAMPEDE_OFFSET to choose, and reseed or wait out the TTL between back-to-back runs.
 */
import { check, sleep } from 'k6'
import exec from 'k6/execution'
import http from 'k6/http'
import type { Options } from 'k6/options'
import { Trend } from 'k6/metrics'
import { envNumber, envString } from './lib/config.ts'
import { recordAnswer, scrapeMetric, validateRequest } from './lib/session.ts'

const CONCURRENCY = envNumber('CONCURRENCY', 100)
const ROUNDS = envNumber('ROUNDS', 20)
const POOL = envNumber('STAMPEDE_POOL', 1000)
const PREFIX = envString('STAMPEDE_PREFIX', 'k6-stampede-')
/** One query per stampede, plus at most one for a straggler that arrived after the first query's fill. */
const MAX_PG_QUERIES_PER_ROUND = envNumber('MAX_PG_QUERIES_PER_ROUND', 2)

/** Postgres session lookups per stampede, from the service's own counters. */
const pgQueriesPerRound = new Trend('stampede_pg_queries_per_round')
/** Time from the first request sent to the last answer of one round. */
const roundDuration = new Trend('stampede_round_duration', true)

export const options: Options = {
  scenarios: {
    stampede: { executor: 'per-vu-iterations', vus: 1, iterations: ROUNDS, maxDuration: '5m' },
  },
  // http.batch sends all of a round's requests at once, each on its own connection.
  batch: CONCURRENCY,
  batchPerHost: CONCURRENCY,
  thresholds: {
    wrong_answers: ['rate==0'],
    http_req_failed: ['rate==0'],
    stampede_pg_queries_per_round: [`max<=${MAX_PG_QUERIES_PER_ROUND}`],
    checks: ['rate==1'],
  },
}

interface SetupData {
  offset: number
  pgBefore: number
  joinsBefore: number
}

const findSession = { query: 'find_session' }

export function setup(): SetupData {
  if (ROUNDS > POOL) throw new Error(`ROUNDS (${ROUNDS}) must not exceed STAMPEDE_POOL (${POOL})`)
  const offset = envNumber('STAMPEDE_OFFSET', Math.floor(Math.random() * (POOL - ROUNDS + 1)))
  return {
    offset,
    pgBefore: scrapeMetric('postgres_query_duration_seconds_count', findSession),
    joinsBefore: scrapeMetric('session_single_flight_joins_total'),
  }
}

export default function stampede(data: SetupData): void {
  const round = exec.scenario.iterationInTest
  const token = `${PREFIX}${data.offset + round + 1}`
  const pgBefore = scrapeMetric('postgres_query_duration_seconds_count', findSession)

  const req = validateRequest(token)
  const requests = Array.from({ length: CONCURRENCY }, () => ({
    method: req.method,
    url: req.url,
    body: req.body,
    params: { ...req.params, tags: { name: 'POST /validate (stampede)' } },
  }))
  const started = Date.now()
  const responses = http.batch(requests)
  roundDuration.add(Date.now() - started)

  let right = 0
  for (const res of responses) if (recordAnswer(res, true)) right++
  const queries = scrapeMetric('postgres_query_duration_seconds_count', findSession) - pgBefore
  pgQueriesPerRound.add(queries)
  check(null, {
    [`stampede: all ${CONCURRENCY} answered valid`]: () => right === CONCURRENCY,
    [`stampede: at most ${MAX_PG_QUERIES_PER_ROUND} Postgres queries`]: () => queries <= MAX_PG_QUERIES_PER_ROUND,
  })
  sleep(0.5)
}

export function teardown(data: SetupData): void {
  const pg = scrapeMetric('postgres_query_duration_seconds_count', findSession) - data.pgBefore
  const joins = scrapeMetric('session_single_flight_joins_total') - data.joinsBefore
  // eslint-disable-next-line no-console -- k6's console.log is its info-level log line
  console.log(
    `stampede: ${ROUNDS} rounds x ${CONCURRENCY} requests -> ${pg} Postgres session queries, ${joins} single-flight joins ` +
      `(tokens ${PREFIX}${data.offset + 1}..${PREFIX}${data.offset + ROUNDS})`,
  )
}
