import { fork } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { freePort } from '../../src/dev/free-port.js'
import type { LoadOptions } from './loadgen.js'
import { startLoad, tally, type LatencySummary } from './traffic.js'

export interface BaselineResult {
  durationS: number
  latency: LatencySummary
  loadgenCpuPct: number
  loadgenLoopDelayP99Ms: number
  /** The bare server's own CPU over the load, in % of one core. */
  serverCpuPct: number
}

/** load/node-soak/bare-server.ts in a process of its own, listening on a free loopback port. */
export async function startBareServer(root: string) {
  const port = await freePort()
  const child = fork(path.join(root, 'load/node-soak/bare-server.ts'), [String(port)], {
    execPath: path.join(root, 'node_modules/.bin/node'),
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async () => {
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('bare server not listening in 10 s')), 10_000)
      child.once('message', () => (clearTimeout(timer), resolve()))
      child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`bare server exited with ${code}`))))
    })
  } catch (err) {
    await stop()
    throw err
  }
  return { url: `http://127.0.0.1:${port}`, cpuSeconds: () => cpuOf(child.pid!), stop }
}

/**
 * The same open-loop load (connections, rate, arrivals) for `durationS` against load/node-soak/bare-server.ts, before
 * anything else of the soak runs: what the generator, loopback and the machine cost on their own right now. Its
 * answers are not checked (it answers every request the same); only its latency is kept.
 */
export async function measureBaseline(root: string, load: Omit<LoadOptions, 'url' | 'durationS'>, durationS: number): Promise<BaselineResult> {
  const bare = await startBareServer(root)
  try {
    const cpuBefore = await bare.cpuSeconds()
    const result = await startLoad(root, { ...load, url: bare.url, durationS }).done
    const cpuAfter = await bare.cpuSeconds()
    const counts = tally(result, undefined)
    return {
      durationS,
      latency: counts.latency,
      loadgenCpuPct: counts.loadgenCpuPct,
      loadgenLoopDelayP99Ms: counts.loadgenLoopDelayP99Ms,
      serverCpuPct: ((cpuAfter - cpuBefore) / result.elapsedS) * 100,
    }
  } finally {
    await bare.stop()
  }
}

/** The machine's busy CPU seconds so far, over all cores, from /proc/stat (Linux; NaN elsewhere). */
export async function machineBusySeconds(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8').catch(() => '')).split('\n')[0] ?? ''
  const ticks = line.trim().split(/\s+/).slice(1).map(Number)
  if (ticks.length < 5) return NaN
  // user nice system idle iowait irq softirq steal: idle and iowait are the not-busy ones; guest time is inside user.
  return (ticks.slice(0, 8).reduce((a, b) => a + b, 0) - ticks[3]! - ticks[4]!) / 100
}

/** A process's user + system CPU seconds so far, from /proc (Linux; NaN elsewhere). */
async function cpuOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime are fields 14 and 15 of /proc/PID/stat, 12 and 13 after the command name; in clock ticks (100/s on Linux).
  return fields.length > 13 ? (Number(fields[11]) + Number(fields[12])) / 100 : NaN
}
