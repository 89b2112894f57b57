import { execFile } from 'node:child_process'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import type { RequestListener } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface TestPki {
  dir: string
  caCert: string
  /** Server certificate for localhost/127.0.0.1 signed by the CA. */
  serverCert: string
  serverKey: string
  /** Client certificate signed by the CA (for mTLS). */
  clientCert: string
  clientKey: string
}

export async function hasOpenssl (): Promise<boolean> {
  try { await run('openssl', ['version']); return true } catch { return false }
}

/** A throwaway CA with a server and a client certificate, made with openssl. */
export async function makePki (): Promise<TestPki> {
  const dir = await mkdtemp(path.join(tmpdir(), 'outrider-pki-'))
  const p = (f: string): string => path.join(dir, f)
  const ossl = async (...args: string[]): Promise<void> => { await run('openssl', args, { cwd: dir }) }
  await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=outrider-test-ca')
  await writeFile(p('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  await writeFile(p('client.ext'), 'extendedKeyUsage=clientAuth\n')
  for (const who of ['server', 'client']) {
    await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p(`${who}.key`), '-out', p(`${who}.csr`), '-subj', `/CN=${who === 'server' ? 'localhost' : 'test-client'}`)
    await ossl('x509', '-req', '-in', p(`${who}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p(`${who}.pem`), '-days', '2', '-extfile', p(`${who}.ext`))
  }
  return { dir, caCert: p('ca.pem'), serverCert: p('server.pem'), serverKey: p('server.key'), clientCert: p('client.pem'), clientKey: p('client.key') }
}

/**
 * An https server on 127.0.0.1 with the PKI's server certificate that
 * requires a client certificate signed by its CA (mTLS). Closed on teardown.
 */
export async function startMtlsServer (t: { teardown (fn: () => unknown): void }, pki: TestPki, handler: RequestListener): Promise<{ port: number }> {
  const server = https.createServer({
    cert: await readFile(pki.serverCert),
    key: await readFile(pki.serverKey),
    ca: await readFile(pki.caCert),
    requestCert: true,
    rejectUnauthorized: true,
  }, handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  return { port: (server.address() as AddressInfo).port }
}
