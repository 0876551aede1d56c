/**
 * CI: packages/client's types are generated from openapi.yaml (npm run client:types). Regenerates them into a
 * temporary file and fails when they differ from the committed ones, so the client cannot drift from the contract.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const committed = path.join(root, 'packages/client/src/generated/openapi.ts')
const dir = mkdtempSync(path.join(tmpdir(), 'client-types-'))
try {
  const fresh = path.join(dir, 'openapi.ts')
  execFileSync(path.join(root, 'node_modules/.bin/openapi-typescript'), [path.join(root, 'openapi.yaml'), '-o', fresh], { stdio: 'pipe' })
  if (readFileSync(fresh, 'utf8') !== readFileSync(committed, 'utf8')) {
    console.error('packages/client/src/generated/openapi.ts is out of date with openapi.yaml: run `npm run client:types` and commit it')
    process.exit(1)
  }
  process.stdout.write('client types match openapi.yaml\n')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
