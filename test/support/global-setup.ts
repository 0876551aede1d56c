import net from 'node:net'
import { TEST_DATABASE_URL, TEST_REDIS_URL } from './env.js'

function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) })
    socket.setTimeout(2000)
    socket.once('connect', () => (socket.destroy(), resolve(true)))
    socket.once('error', () => resolve(false))
    socket.once('timeout', () => (socket.destroy(), resolve(false)))
  })
}

/** Fails fast, with the fix, when the shared Redis or Postgres the suites need is not up. */
export default async function globalSetup(): Promise<void> {
  const missing: string[] = []
  if (!(await reachable(TEST_DATABASE_URL))) missing.push(`Postgres at ${TEST_DATABASE_URL}`)
  if (!(await reachable(TEST_REDIS_URL))) missing.push(`Redis at ${TEST_REDIS_URL}`)
  if (missing.length > 0) {
    throw new Error(`Tests need ${missing.join(' and ')}; start them (see .ci/run) or set TEST_DATABASE_URL / TEST_REDIS_URL.`)
  }
}
