/**
 * Load: 1000 virtual users for 10 minutes on the hit path (seeded tokens, uniformly at random), each with a short
 * think time, as the Studio's backends would call it. Thresholds: p99 latency, error rate, and no wrong answer.
 *
 *   k6 run load/load.ts                                   # defaults: VUS=1000 DURATION=10m THINK_MS=100 P99_MS=25
 *   k6 run -e VUS=200 -e DURATION=2m load/load.ts         # a shorter run on a laptop
 */
import { sleep } from 'k6'
import type { Options } from 'k6/options'
import { ERROR_RATE, envNumber, envString, P99_MS, randomToken } from './lib/config.ts'
import { validate } from './lib/session.ts'

const THINK_MS = envNumber('THINK_MS', 100)

export const options: Options = {
  scenarios: {
    load: {
      executor: 'ramping-vus',
      startVUs: 0,
      // A 30 s ramp so connection set-up is not measured as latency, then the plateau the thresholds are about.
      stages: [
        { duration: '30s', target: envNumber('VUS', 1000) },
        { duration: envString('DURATION', '10m'), target: envNumber('VUS', 1000) },
        { duration: '15s', target: 0 },
      ],
      gracefulRampDown: '10s',
    },
  },
  thresholds: {
    'http_req_duration{name:POST /validate}': [`p(99)<${P99_MS}`, `p(95)<${P99_MS / 2}`],
    http_req_failed: [`rate<${ERROR_RATE}`],
    wrong_answers: ['rate==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)', 'max'],
}

export default function load(): void {
  validate(randomToken(), true)
  if (THINK_MS > 0) sleep((THINK_MS / 1000) * (0.5 + Math.random()))
}
