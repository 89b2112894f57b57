import t from 'tap'
import net from 'node:net'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'

function canConnect (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  })
}

t.test('shutdown drains an in-flight request, then stops', async (t) => {
  let release: (() => void) | undefined
  const up = await startUpstream((_req, res) => { release = () => { res.end('done') } })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url))
  const inflight = request(proxy.url)
  while (release === undefined) await new Promise((resolve) => setTimeout(resolve, 10))

  let stopped = false
  const stopping = proxy.shutdown(5000).then(() => { stopped = true })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(await canConnect(proxy.port), false, 'new connections are refused while draining')
  const ready = await request(`${proxy.adminUrl}/ready`)
  t.equal(ready.statusCode, 503, '/ready reports draining')
  await ready.body.dump()
  t.equal(stopped, false, 'shutdown waits for the in-flight request')

  release()
  const res = await inflight
  t.equal(res.statusCode, 200)
  t.equal(res.headers.connection, 'close', 'the drained connection is not kept alive')
  t.equal(await res.body.text(), 'done')
  await stopping
  t.equal(stopped, true)
})

t.test('shutdown gives up on requests at the deadline', async (t) => {
  const up = await startUpstream(() => { /* never answers */ })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url))
  const inflight = request(proxy.url).catch((err: Error) => err)
  await new Promise((resolve) => setTimeout(resolve, 50))
  await proxy.shutdown(200)
  t.type(await inflight, Error, 'the stuck request was cut at the deadline')
})
