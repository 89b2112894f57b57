import t from 'tap'
import { readFile } from 'node:fs/promises'
import * as grpc from '@grpc/grpc-js'
import { createOperatorClient } from '../../control-plane/operator-client.ts'
import { hasOpenssl, makePki } from '../helpers/certs.ts'
import { TOKENS, baseDocument, startTestControlPlane, startTestDataPlane, tempDir, waitFor } from './helpers.ts'

t.test('TLS and mTLS on the gRPC port', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const pki = await makePki()
  const ca = await readFile(pki.caCert)
  const cp = await startTestControlPlane(t, {
    store: `${await tempDir(t)}/store.json`,
    listen: 'localhost:0',
    tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.caCert },
  })
  const withCert = createOperatorClient(cp.address, { token: TOKENS.admin, ca, cert: await readFile(pki.clientCert), key: await readFile(pki.clientKey) })
  const noCert = createOperatorClient(cp.address, { token: TOKENS.admin, ca })
  const plaintext = createOperatorClient(cp.address, { token: TOKENS.admin })
  t.teardown(() => { withCert.close(); noCert.close(); plaintext.close() })

  const put = await withCert.putConfig({ configJson: JSON.stringify(baseDocument([['a', 'http://127.0.0.1:9']])) })
  t.equal(put.version, 1, 'a client with a certificate the CA signed gets through')
  await t.rejects(noCert.getConfig({}), { code: grpc.status.UNAVAILABLE }, 'no client certificate: the handshake fails')
  await t.rejects(plaintext.getConfig({}), { code: grpc.status.UNAVAILABLE }, 'plaintext is not spoken')

  const dp = await startTestDataPlane(t, cp.address, 'tls-1', { ca, cert: await readFile(pki.clientCert), key: await readFile(pki.clientKey) })
  await dp.started
  await waitFor('ACK', () => dp.client.version === '1')
  t.pass('a data plane subscribes over mTLS')
})
