/**
 * Soak: a steady, realistic mix for hours, to find what only time shows: memory growth in the process or in Redis,
 * connection or timer leaks, pool drift, TTL churn, a slow climb in p99. Watch Grafana's Memory, Redis memory and
 * pool panels while it runs; compare the first and last ten minutes.
 *
 *   k6 run load/soak.ts                                   # 1000 req/s for 2 h
 *   k6 run -e RATE=300 -e DURATION=8h load/soak.ts
 *
 * Mix per iteration: 94% validate a seeded token, 5% an unknown token, 1% invalidate a seeded token (no revoke, so
 * the next validation of it reads Postgres and refills the cache).
 */
import type { Options } from 'k6/options'
import { ERROR_RATE, envNumber, envString, P99_MS, randomToken, unknownToken } from './lib/config.ts'
import { invalidateToken, validate } from './lib/session.ts'

export const options: Options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: envNumber('RATE', 1000),
      timeUnit: '1s',
      duration: envString('DURATION', '2h'),
      preAllocatedVUs: envNumber('PREALLOCATED_VUS', 100),
      maxVUs: envNumber('MAX_VUS', 1000),
    },
  },
  thresholds: {
    'http_req_duration{name:POST /validate}': [`p(99)<${P99_MS}`],
    http_req_failed: [`rate<${ERROR_RATE}`],
    wrong_answers: ['rate==0'],
    dropped_iterations: ['count<100'],
  },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'p(99.9)', 'max'],
}

export default function soak(): void {
  const roll = Math.random()
  if (roll < 0.01) invalidateToken(randomToken())
  else if (roll < 0.06) validate(unknownToken(), false)
  else validate(randomToken(), true)
}
