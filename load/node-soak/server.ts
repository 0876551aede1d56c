import { spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import path from 'node:path'

/**
 * The real server process as the image runs it (`node dist/server.js`, production mode; run.ts builds dist/ first), on
 * loopback.
 * Its output is drained (a full pipe would stall it) and its tail kept for the report when something goes wrong.
 */
export async function startServer(root: string, env: Record<string, string>, diagnostics: { nodeArgs?: string[]; logFile?: string } = {}) {
  const child = spawn(path.join(root, 'node_modules/.bin/node'), [...(diagnostics.nodeArgs ?? []), path.join(root, 'dist/server.js')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_ENV: 'production', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let tail = ''
  const keep = (chunk: Buffer) => (tail = (tail + chunk.toString()).slice(-8000))
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  if (diagnostics.logFile) {
    const file = createWriteStream(diagnostics.logFile)
    child.stdout.pipe(file)
    child.stderr.pipe(file)
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const base = `http://127.0.0.1:${env.PORT}`

  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${tail}`)
    const ready = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false)
    if (ready) break
    if (Date.now() > deadline) throw new Error(`server not ready in 60 s:\n${tail}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }

  return {
    base,
    tail: () => tail,
    /** SIGTERM, bounded; the exit code (null if it had to be killed). */
    async stop(): Promise<number | null> {
      if (child.exitCode !== null) return child.exitCode
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}
