import { describe, expect, it } from 'vitest'
import { Errors } from '../../../src/errors.js'
import { loadOpenApi } from '../../../test/support/openapi.js'
import { actionFor, CODE_ACTIONS } from '../src/index.js'

/** The client's code map is the service's catalogue: same codes, same statuses, and an action for each. */
describe('CODE_ACTIONS', () => {
  it('maps every code of src/errors.ts and of openapi.yaml, at the status the service sends it with', () => {
    const catalogue = Object.values(Errors).map((E) => new E())
    expect(Object.keys(CODE_ACTIONS).sort()).toEqual(catalogue.map((e) => e.code).sort())
    for (const err of catalogue) expect(CODE_ACTIONS[err.code as keyof typeof CODE_ACTIONS].status, err.code).toBe(err.statusCode)
    const documented = (loadOpenApi().components as { schemas: { ErrorCode: { enum: string[] } } }).schemas.ErrorCode.enum
    expect(Object.keys(CODE_ACTIONS).sort()).toEqual([...documented].sort())
  })

  it('never retries a 4xx or a 500; retries every 503 and a proxy 502/504', () => {
    for (const [code, { status, action }] of Object.entries(CODE_ACTIONS)) {
      if (status < 503) expect(action, code).not.toMatch(/^retry/)
      else expect(action, code).toMatch(/^retry/)
    }
    expect(CODE_ACTIONS.SHUTTING_DOWN.action).toBe('retry-now')
    expect(CODE_ACTIONS.SESSION_STORE_MISCONFIGURED.action).toBe('fallback')
    expect([502, 503, 504].map((s) => actionFor(s, undefined))).toEqual(['retry-after', 'retry-after', 'retry-after'])
    expect(actionFor(500, undefined)).toBe('fallback')
    expect(actionFor(401, undefined)).toBe('configuration')
  })
})
