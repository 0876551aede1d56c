import { readFileSync } from 'node:fs'
import type pg from 'pg'

/**
 * ops/postgres/runtime-role.sql is the one definition of the service role's privileges: operators run it with psql,
 * `npm run migrate` (with MIGRATION_DATABASE_URL) and the tests run the same file through pg. Its only psql feature
 * is the two variables `:'role'` and `:'schema'`, as literals, which are substituted here the way psql would.
 */
const SCRIPT = new URL('../../ops/postgres/runtime-role.sql', import.meta.url)

const literal = (value: string) => `'${value.replaceAll("'", "''")}'`

export function runtimeRoleSql(role: string, schema: string): string {
  return readFileSync(SCRIPT, 'utf8').replaceAll(":'role'", literal(role)).replaceAll(":'schema'", literal(schema))
}

/** Grants `role` what the running service needs on `schema` (and nothing else); run by the tables' owner. */
export async function applyRuntimeRole(client: pg.ClientBase, role: string, schema: string): Promise<void> {
  await client.query(runtimeRoleSql(role, schema))
}
