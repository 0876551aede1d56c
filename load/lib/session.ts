import { check } from 'k6'
import http, { type RefinedResponse, type ResponseType } from 'k6/http'
import { Counter, Rate } from 'k6/metrics'
import { BASE_URL, SERVICE_API_KEY } from './config.ts'

/** The two shapes of a 200 from POST /validate (openapi.yaml). */
export type ValidateAnswer =
  | { valid: true; source: 'l1' | 'redis' | 'postgres'; session: { id: string; userId: string }; user: { id: string } }
  | { valid: false; reason: 'not_found' | 'expired' | 'revoked' | 'user_banned' | 'user_deleted' }

/**
 * A validation whose answer is wrong (a seeded session not valid, an unknown token valid) or missing (a non-200).
 * Correctness under load is a threshold like latency: it must stay at 0.
 */
export const wrongAnswers = new Rate('wrong_answers')
/** Answers by source (postgres, redis, l1) and by reason, to see the hit ratio from the client's side. */
export const answersBySource = new Counter('validate_answers')

const JSON_HEADERS = { 'Content-Type': 'application/json' }

function parse(res: RefinedResponse<ResponseType | undefined>): ValidateAnswer | null {
  if (res.status !== 200 || typeof res.body !== 'string') return null
  try {
    return JSON.parse(res.body) as ValidateAnswer
  } catch {
    return null
  }
}

export function validateRequest(token: string) {
  return {
    method: 'POST' as const,
    url: `${BASE_URL}/validate`,
    body: JSON.stringify({ token }),
    params: { headers: JSON_HEADERS, tags: { name: 'POST /validate' } },
  }
}

/** Records the answer in the custom metrics and returns whether it was the expected one. */
export function recordAnswer(res: RefinedResponse<ResponseType | undefined>, expectValid: boolean): boolean {
  const answer = parse(res)
  const right = answer !== null && answer.valid === expectValid
  wrongAnswers.add(!right)
  if (answer) answersBySource.add(1, { answer: answer.valid ? `valid:${answer.source}` : `invalid:${answer.reason}` })
  check(res, {
    'validate: 200': (r) => r.status === 200,
    [expectValid ? 'validate: seeded token is valid' : 'validate: unknown token is not valid']: () => right,
  })
  return right
}

/** POST /validate and check the answer: `expectValid` true for a seeded token, false for a never-issued one. */
export function validate(token: string, expectValid: boolean): boolean {
  const req = validateRequest(token)
  return recordAnswer(http.post(req.url, req.body, req.params), expectValid)
}

/** POST /invalidate for one token with the service key (no revoke: the next validation reads Postgres again). */
export function invalidateToken(token: string): boolean {
  const res = http.post(`${BASE_URL}/invalidate`, JSON.stringify({ token }), {
    headers: { ...JSON_HEADERS, Authorization: `Bearer ${SERVICE_API_KEY}` },
    tags: { name: 'POST /invalidate' },
  })
  return check(res, { 'invalidate: 200': (r) => r.status === 200 })
}

/** The value of one Prometheus sample line of GET /metrics (sum over lines that match `name` and every label). */
export function scrapeMetric(name: string, labels: Record<string, string> = {}): number {
  const res = http.get(`${BASE_URL}/metrics`, { tags: { name: 'GET /metrics' } })
  if (res.status !== 200 || typeof res.body !== 'string') return Number.NaN
  let total = 0
  for (const line of res.body.split('\n')) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== '{' && rest[0] !== ' ') continue
    if (!Object.entries(labels).every(([k, v]) => rest.includes(`${k}="${v}"`))) continue
    total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}
