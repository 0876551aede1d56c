import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

/**
 * Throwaway certificates for TLS tests, made at test time with the openssl CLI (P-256 keys: fast to make): a CA, a
 * server certificate for 127.0.0.1 and localhost signed by it, a client certificate signed by it, and a second,
 * unrelated CA (the "wrong CA"). Valid for one day; the directory is removed by cleanup().
 */
export interface Pem {
  certFile: string
  keyFile: string
  cert: string
  key: string
}

export interface TestCertificates {
  dir: string
  ca: Pem
  server: Pem
  client: Pem
  /** A CA that signed nothing here: trusting only it must fail every handshake. */
  otherCa: Pem
  /** A server certificate whose only name is `elsewhere.test`: chain valid, host name wrong. */
  misnamedServer: Pem
  cleanup(): void
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(path.join(tmpdir(), 'ssc-certs-'))
  const file = (name: string) => path.join(dir, name)
  const pem = (name: string): Pem => ({
    certFile: file(`${name}.crt`),
    keyFile: file(`${name}.key`),
    cert: readFileSync(file(`${name}.crt`), 'utf8'),
    key: readFileSync(file(`${name}.key`), 'utf8'),
  })
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

  const makeCa = (name: string) =>
    openssl(['req', '-x509', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`], dir)

  const makeSigned = (name: string, extensions: string) => {
    openssl(['req', '-new', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir)
    writeFileSync(file(`${name}.ext`), extensions)
    openssl(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`],
      dir,
    )
  }

  makeCa('ca')
  makeCa('other-ca')
  makeSigned('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  makeSigned('client', 'extendedKeyUsage=clientAuth\n')
  makeSigned('misnamed', 'subjectAltName=DNS:elsewhere.test\nextendedKeyUsage=serverAuth\n')

  return {
    dir,
    ca: pem('ca'),
    server: pem('server'),
    client: pem('client'),
    otherCa: pem('other-ca'),
    misnamedServer: pem('misnamed'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  }
}
