/**
 * Breaking point: an open model (arrival rate, not virtual users) that ramps the request rate until the service
 * cannot keep up, then stops. The run aborts when the error rate or p99 crosses its limit; the rate reached by then
 * (k6's http_reqs rate and the elapsed time against the ramp) is the ceiling of this stack.
 *
 *   k6 run load/breakpoint.ts                             # 500 -> 60000 req/s over 20 minutes
 *   k6 run -e MAX_RPS=20000 -e RAMP=5m load/breakpoint.ts
 *
 * `dropped_iterations` rising means k6 itself ran out of VUs (raise MAX_VUS) or the service stopped answering in time.
 */
import type { Options } from 'k6/options'
import { envNumber, envString, randomToken } from './lib/config.ts'
import { validate } from './lib/session.ts'

const START_RPS = envNumber('START_RPS', 500)
const MAX_RPS = envNumber('MAX_RPS', 60_000)
const BREAK_P99_MS = envNumber('BREAK_P99_MS', 100)
const BREAK_ERROR_RATE = envNumber('BREAK_ERROR_RATE', 0.01)

export const options: Options = {
  scenarios: {
    breakpoint: {
      executor: 'ramping-arrival-rate',
      startRate: START_RPS,
      timeUnit: '1s',
      preAllocatedVUs: envNumber('PREALLOCATED_VUS', 200),
      maxVUs: envNumber('MAX_VUS', 5000),
      stages: [{ duration: envString('RAMP', '20m'), target: MAX_RPS }],
    },
  },
  thresholds: {
    http_req_failed: [{ threshold: `rate<${BREAK_ERROR_RATE}`, abortOnFail: true, delayAbortEval: '30s' }],
    'http_req_duration{name:POST /validate}': [
      { threshold: `p(99)<${BREAK_P99_MS}`, abortOnFail: true, delayAbortEval: '30s' },
    ],
    wrong_answers: [{ threshold: 'rate==0', abortOnFail: true }],
  },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'p(99.9)', 'max'],
}

export default function breakpoint(): void {
  validate(randomToken(), true)
}
