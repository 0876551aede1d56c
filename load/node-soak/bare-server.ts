/**
 * The soak's baseline: a bare node:http server that reads each request's body and answers a fixed 200 JSON, with no
 * Redis, no Postgres and no framework. The same load against it, on the same machine in the same run, is the floor the
 * load generator, loopback TCP and the machine put under any service's latency (run.ts reports the service against it).
 * Run by Node itself (type stripping), in a process of its own: `node load/node-soak/bare-server.ts PORT`.
 */
import http from 'node:http'

const ANSWER = JSON.stringify({ valid: false, reason: 'not_found' })
const server = http.createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  req.resume()
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(ANSWER) })
    res.end(ANSWER)
  })
})
server.listen(Number(process.argv[2]), '127.0.0.1', () => process.send?.('listening'))
process.once('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
