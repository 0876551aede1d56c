import { execFile } from 'node:child_process'
import path from 'node:path'

/** The Docker CLI and the image under test, for the container suite. One job: run docker, bounded, loudly on failure. */

export const ROOT = path.resolve(import.meta.dirname, '../..')
export const IMAGE = process.env.SSC_TEST_IMAGE ?? 'studio-session-cache:container-test'

export interface Run {
  stdout: string
  stderr: string
}

export function docker(args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return run('docker', args, options)
}

export function run(command: string, args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 2 ** 20, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-4000)}\n${stdout.slice(-2000)}`))
        else resolve({ stdout, stderr })
      },
    )
  })
}

/**
 * The base image (the registry's node:24-bookworm-slim, or the stand-in scripts/container/node-base-image.sh builds
 * from Debian packages where no registry is reachable), then the project's Dockerfile on it.
 *
 * The legacy builder (DOCKER_BUILDKIT=0): Debian's engine has no buildx here, and BuildKit would try to pull the
 * `docker/dockerfile:1` frontend named by the Dockerfile's `# syntax` line from Docker Hub. Host network: the build's
 * `npm ci` reaches the npm registry the way this machine does.
 */
export async function buildImage(log: (line: string) => void): Promise<{ base: string; buildMs: number; baseMs: number }> {
  const t0 = Date.now()
  const base = (await run('bash', [path.join(ROOT, 'scripts/container/node-base-image.sh')], { timeoutMs: 25 * 60_000 })).stdout.trim()
  const baseMs = Date.now() - t0
  log(`base image ${base} (${(baseMs / 1000).toFixed(0)} s)`)
  const t1 = Date.now()
  await docker(['build', '--network', 'host', '--build-arg', `NODE_IMAGE=${base}`, '-t', IMAGE, '.'], {
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
    timeoutMs: 25 * 60_000,
  })
  const buildMs = Date.now() - t1
  log(`built ${IMAGE} (${(buildMs / 1000).toFixed(0)} s)`)
  return { base, buildMs, baseMs }
}
