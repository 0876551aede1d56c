import Fastify from 'fastify'
import { ValidateBody, ValidateResponse } from '../../src/http/schemas.js'

/** A valid answer of the size the service sends: what the bare route returns, every time. */
export const constantAnswer = {
  valid: true,
  session: {
    id: '6f1c7a52-64d7-4c1e-9d8e-0a4f2b1c9e77',
    userId: '0c3b9f4e-2a71-4d36-8f0e-5b6a7c8d9e10',
    createdAt: '2026-11-25T10:00:00.000Z',
    expiresAt: '2026-11-26T10:00:00.000Z',
    lastActivityAt: '2026-11-25T10:00:00.000Z',
  },
  user: { id: '0c3b9f4e-2a71-4d36-8f0e-5b6a7c8d9e10', email: 'ada@example.test', firstName: 'Ada', lastName: 'Lovelace', username: 'ada' },
  source: 'redis',
} as const

/** The framework's ceiling: Fastify, the service's own request and response schemas, a constant answer. */
export function bareApp(tokenMaxLength: number) {
  const app = Fastify({ logger: false })
  app.post('/validate', { schema: { body: ValidateBody(tokenMaxLength), response: { 200: ValidateResponse } } }, async () => constantAnswer)
  return app
}
