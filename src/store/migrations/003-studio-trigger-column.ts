/**
 * The Studio's schema gives user_sessions a BEFORE UPDATE trigger (update_user_sessions_activity) whose shared function
 * (update_updated_at_column) assigns NEW.updated_at, a column the Studio never created on that table. Every UPDATE of a
 * session then fails with SQLSTATE 42703 (record "new" has no field "updated_at"): this service's revoke, and the
 * Studio's own refresh and activity writes.
 *
 * The fix that changes least: give user_sessions the column the trigger already expects. It is additive (nullable, no
 * default, so no table rewrite), idempotent, and invisible to the Studio's code, which names its columns. The trigger
 * then works as its author meant it to. Dropping or rewriting the Studio's trigger would be changing someone else's
 * schema; on a database without that trigger the column simply stays NULL.
 */
export function studioTriggerColumnMigration(schema: string): string {
  const s = `"${schema}"`
  return `ALTER TABLE ${s}.user_sessions ADD COLUMN IF NOT EXISTS updated_at timestamptz;`
}
