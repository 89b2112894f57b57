import t from 'tap'
import { readFile } from 'node:fs/promises'
import { Agent, request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'
import { hasOpenssl, makePki } from '../helpers/certs.ts'

t.test('TLS termination', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed: no certificates to test with'); return }
  const pki = await makePki()
  const ca = await readFile(pki.caCert)
  const up = await startUpstream()
  t.teardown(up.close)
  const doc = { ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } } }
  const proxy = await startTestProxy(doc, t)
  const agent = new Agent({ connect: { ca } })
  t.teardown(() => agent.close())
  const res = await request(`https://localhost:${proxy.port}/x`, { dispatcher: agent })
  t.equal(res.statusCode, 200)
  const body = await res.body.json() as { headers: Record<string, string> }
  t.equal(body.headers['x-forwarded-proto'], 'https', 'the upstream learns the client used https')

  await t.rejects(request(`https://localhost:${proxy.port}/x`, { dispatcher: new Agent({ connect: { rejectUnauthorized: true } }) }), Error, 'an untrusted certificate is refused by a strict client')

  // A reload re-reads the files (a renewed certificate needs no restart).
  const pki2 = await makePki()
  await proxy.reload({ ...doc, listen: { ...doc.listen, tls: { cert: pki2.serverCert, key: pki2.serverKey } } })
  const ca2 = await readFile(pki2.caCert)
  const agent2 = new Agent({ connect: { ca: ca2 } })
  t.teardown(() => agent2.close())
  t.equal((await request(`https://localhost:${proxy.port}/x`, { dispatcher: agent2 })).statusCode, 200, 'new handshakes use the new certificate')

  await t.rejects(proxy.reload({ ...doc, listen: { ...doc.listen, tls: { cert: '/nonexistent.pem', key: pki.serverKey } } }), /listen\.tls\.cert/, 'a missing certificate file keeps the old config')
})

t.test('mTLS: clients need a certificate from the configured CA', async (t) => {
  if (!await hasOpenssl()) { t.plan(0, 'openssl is not installed'); return }
  const pki = await makePki()
  const ca = await readFile(pki.caCert)
  const up = await startUpstream()
  t.teardown(up.close)
  const proxy = await startTestProxy({ ...simpleDoc(up.url), listen: { host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.caCert } } }, t)
  const withCert = new Agent({ connect: { ca, cert: await readFile(pki.clientCert), key: await readFile(pki.clientKey) } })
  const without = new Agent({ connect: { ca } })
  t.teardown(() => Promise.all([withCert.close(), without.close()]))
  t.equal((await request(`https://localhost:${proxy.port}/`, { dispatcher: withCert })).statusCode, 200)
  await t.rejects(request(`https://localhost:${proxy.port}/`, { dispatcher: without }), Error, 'no client certificate, no connection')
})
