/**
 * Smoke: one virtual user, every route once per iteration, for 30 s. Run it first, after every deploy of the stack:
 * it proves the target is up, seeded, keyed and answering the contract before any heavier scenario runs.
 *
 *   k6 run load/smoke.ts
 */
import { check, sleep } from 'k6'
import http from 'k6/http'
import type { Options } from 'k6/options'
import { BASE_URL, envString, randomToken, SERVICE_API_KEY, unknownToken } from './lib/config.ts'
import { validate } from './lib/session.ts'

export const options: Options = {
  vus: 1,
  duration: envString('DURATION', '30s'),
  thresholds: {
    checks: ['rate==1'],
    wrong_answers: ['rate==0'],
    http_req_failed: ['rate==0'],
    'http_req_duration{name:POST /validate}': ['p(99)<100'],
  },
}

const JSON_HEADERS = { 'Content-Type': 'application/json' }
/** 4xx answers this script asks for on purpose are not failures. */
const expect4xx = { responseCallback: http.expectedStatuses(200, 400, 401) }

export default function smoke(): void {
  const live = http.get(`${BASE_URL}/health/live`, { tags: { name: 'GET /health/live' } })
  check(live, { 'live: 200': (r) => r.status === 200 })

  const ready = http.get(`${BASE_URL}/health/ready`, { tags: { name: 'GET /health/ready' } })
  check(ready, { 'ready: 200': (r) => r.status === 200 })

  const health = http.get(`${BASE_URL}/health/redis`, { tags: { name: 'GET /health/redis' } })
  check(health, {
    'health: 200': (r) => r.status === 200,
    'health: healthy': (r) => (r.json('status') as string) === 'healthy',
    'health: no Redis warnings': (r) => ((r.json('redis.warnings') as string[] | null) ?? []).length === 0,
  })

  // Twice: the first may come from Postgres, the second must then come from the cache.
  const token = randomToken()
  validate(token, true)
  validate(token, true)
  validate(unknownToken(), false)

  const malformed = http.post(`${BASE_URL}/validate`, JSON.stringify({ token: '' }), { headers: JSON_HEADERS, ...expect4xx })
  check(malformed, {
    'malformed: 400': (r) => r.status === 400,
    'malformed: stable code': (r) => (r.json('code') as string) === 'TOKEN_EMPTY',
  })

  const anonymous = http.post(`${BASE_URL}/invalidate`, JSON.stringify({ token: unknownToken() }), {
    headers: JSON_HEADERS,
    ...expect4xx,
  })
  check(anonymous, { 'invalidate without a key: 401': (r) => r.status === 401 })

  const keyed = http.post(`${BASE_URL}/invalidate`, JSON.stringify({ token: unknownToken() }), {
    headers: { ...JSON_HEADERS, Authorization: `Bearer ${SERVICE_API_KEY}` },
  })
  check(keyed, { 'invalidate with the key: 200': (r) => r.status === 200 })

  const metrics = http.get(`${BASE_URL}/metrics`, { tags: { name: 'GET /metrics' } })
  check(metrics, {
    'metrics: 200': (r) => r.status === 200,
    'metrics: validations counted': (r) => typeof r.body === 'string' && r.body.includes('session_validations_total'),
  })

  sleep(1)
}
