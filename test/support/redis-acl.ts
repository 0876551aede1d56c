import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The shipped ACL file: what docker-compose.yml loads, and what the ACL tests start redis-server with. */
export const ACL_FILE = fileURLToPath(new URL('../../ops/redis/users.acl', import.meta.url))

/** The prefix and channel the shipped ACL grants the service's user (`ssc`). */
export const ACL_PREFIX = 'ssc:'

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

/**
 * ops/redis/users.acl with its password placeholders filled in the way docker-compose.yml fills them (the hex SHA-256
 * of each password), written to a temporary file; random passwords unless given.
 */
export function renderAclFile(passwords: { service?: string; admin?: string } = {}) {
  const service = passwords.service ?? `svc-${randomBytes(12).toString('hex')}`
  const admin = passwords.admin ?? `adm-${randomBytes(12).toString('hex')}`
  const dir = mkdtempSync(path.join(tmpdir(), 'ssc-acl-'))
  const file = path.join(dir, 'users.acl')
  const text = readFileSync(ACL_FILE, 'utf8')
    .replaceAll('@SSC_PASSWORD_SHA256@', sha256(service))
    .replaceAll('@ADMIN_PASSWORD_SHA256@', sha256(admin))
  writeFileSync(file, text)
  return {
    file,
    passwords: { service, admin },
    /** redis:// URL for the service's user on that port. */
    serviceUrl: (port: number) => `redis://ssc:${encodeURIComponent(service)}@127.0.0.1:${port}`,
    adminUrl: (port: number) => `redis://default:${encodeURIComponent(admin)}@127.0.0.1:${port}`,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  }
}
