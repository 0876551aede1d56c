/**
 * Unknown-token flood alongside valid traffic: one scenario validates seeded tokens at a steady rate while another
 * sends tokens that were never issued (every one distinct by default, so the negative cache cannot help and each
 * costs a Postgres read). The valid traffic's latency and correctness are what is judged: a flood of garbage must not
 * take the hit path down with it, and the garbage itself must get `valid: false`, never a 5xx.
 *
 *   k6 run load/unknown-flood.ts                          # VALID_RPS=2000 FLOOD_RPS=2000 for 5m
 *   k6 run -e FLOOD_DISTINCT=100 load/unknown-flood.ts    # 100 repeating unknown tokens: the negative cache's case
 */
import type { Options } from 'k6/options'
import { ERROR_RATE, envNumber, envString, P99_MS, randomToken, unknownToken } from './lib/config.ts'
import { validate } from './lib/session.ts'

const DURATION = envString('DURATION', '5m')
const FLOOD_DISTINCT = envNumber('FLOOD_DISTINCT', 0)

export const options: Options = {
  scenarios: {
    valid: {
      executor: 'constant-arrival-rate',
      exec: 'validTraffic',
      rate: envNumber('VALID_RPS', 2000),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 100,
      maxVUs: 1000,
    },
    flood: {
      executor: 'constant-arrival-rate',
      exec: 'flood',
      rate: envNumber('FLOOD_RPS', 2000),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 100,
      maxVUs: 2000,
    },
  },
  thresholds: {
    'http_req_duration{scenario:valid}': [`p(99)<${P99_MS}`],
    'http_req_failed{scenario:valid}': [`rate<${ERROR_RATE}`],
    'wrong_answers{scenario:valid}': ['rate==0'],
    // The flood is answered too (valid:false, 200), however slowly; a 503 here means Postgres is drowning.
    'http_req_failed{scenario:flood}': ['rate<0.01'],
    'wrong_answers{scenario:flood}': ['rate<0.01'],
  },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'p(99.9)', 'max'],
}

export function validTraffic(): void {
  validate(randomToken(), true)
}

export function flood(): void {
  validate(unknownToken(FLOOD_DISTINCT), false)
}
