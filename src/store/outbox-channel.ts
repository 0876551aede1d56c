import { createHash } from 'node:crypto'

/**
 * The NOTIFY channel of one schema's revocation outbox. One per schema, so that several deployments (or test runs)
 * sharing a database never wake each other. Postgres caps channel names at 63 bytes: a long schema name is hashed.
 */
export function outboxChannel(schema: string): string {
  const plain = `ssc_outbox_${schema}`
  return plain.length <= 63 ? plain : `ssc_outbox_${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`
}
