import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { createOperatorClient, sendsTokenInClear } from '../../control-plane/operator-client.ts'
import { ControlPlaneClient } from '../../src/control-plane-client.ts'
import { hasOpenssl, makePki } from '../helpers/certs.ts'
import { testLogger } from '../helpers/proxy.ts'

/** A TCP server that resolves with the first byte a client sends: 0x16 opens a TLS ClientHello, 'P' the cleartext HTTP/2 preface. */
async function firstByteServer (t: { teardown (fn: () => unknown): void }): Promise<{ address: string, first: Promise<number> }> {
  let resolve!: (b: number) => void
  const first = new Promise<number>((r) => { resolve = r })
  const server = net.createServer((socket) => {
    socket.once('data', (b) => { resolve(b[0] ?? -1); socket.destroy() })
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, first }
}

t.test('a client certificate without a CA speaks TLS (against the system roots), never plaintext', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const pki = await makePki()
  const cert = await readFile(pki.clientCert)
  const key = await readFile(pki.clientKey)

  const dpServer = await firstByteServer(t)
  const dp = new ControlPlaneClient({ address: dpServer.address, nodeId: 'n', token: 'data-plane-token-0123456789', cert, key, log: testLogger(), apply: async () => {} })
  dp.start()
  t.teardown(() => { dp.close() })
  t.equal(await dpServer.first, 0x16, 'the data plane opens with a TLS ClientHello')

  const opServer = await firstByteServer(t)
  const op = createOperatorClient(opServer.address, { token: 'operator-token-0123456789', cert, key })
  t.teardown(() => { op.close() })
  op.getConfig({}).catch(() => {})
  t.equal(await opServer.first, 0x16, 'so does the operator client')
})

t.test('a token is said to go in clear only over plaintext to an address off this host', async (t) => {
  const token = 'data-plane-token-0123456789'
  t.equal(sendsTokenInClear('cp.example:50051', { token }), true)
  t.equal(sendsTokenInClear('10.0.0.5:50051', { token }), true)
  t.equal(sendsTokenInClear('cp.example:50051', {}), false, 'no token')
  t.equal(sendsTokenInClear('cp.example:50051', { token, ca: Buffer.from('x') }), false, 'TLS')
  t.equal(sendsTokenInClear('cp.example:50051', { token, cert: Buffer.from('x'), key: Buffer.from('x') }), false, 'TLS with a client certificate')
  for (const a of ['127.0.0.1:50051', 'localhost:50051', '[::1]:50051']) t.equal(sendsTokenInClear(a, { token }), false, `${a} stays on this host`)
})
