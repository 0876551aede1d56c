/**
 * What the soak sends and what each answer must be: a mix of valid cached tokens, unknown tokens, revoked tokens and
 * /invalidate calls. Pure, so the load generator (its own process) and the report agree on the kinds.
 */

export type Kind = 'valid' | 'unknown' | 'revoked' | 'invalidate'

export const KINDS: Kind[] = ['valid', 'unknown', 'revoked', 'invalidate']
export const MIX: Array<[Kind, number]> = [['valid', 0.8], ['unknown', 0.08], ['revoked', 0.08], ['invalidate', 0.04]]

export function pick(roll = Math.random()): Kind {
  for (const [kind, share] of MIX) if ((roll -= share) < 0) return kind
  return 'valid'
}

export const zero = (): Record<Kind, number> => ({ valid: 0, unknown: 0, revoked: 0, invalidate: 0 })

/** Whether a 200's body is the right answer for its kind (a body that is not JSON is wrong). */
export function isRight(kind: Kind, body: string): boolean {
  let answer: { valid?: unknown; reason?: unknown; invalidated?: unknown }
  try {
    answer = JSON.parse(body) as typeof answer
  } catch {
    return false
  }
  return kind === 'valid' ? answer.valid === true
    : kind === 'unknown' ? answer.valid === false && answer.reason === 'not_found'
    : kind === 'revoked' ? answer.valid === false && answer.reason === 'revoked'
    : typeof answer.invalidated === 'number'
}

/** The error code of a 503's body ("no code" when it has none). */
export const codeOf = (body: string) => /"code":"(\w+)"/.exec(body)?.[1] ?? 'no code'
