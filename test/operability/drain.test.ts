import t from 'tap'
import { request } from 'undici'
import { startUpstream } from '../helpers/upstream.ts'
import { startTestProxy, simpleDoc } from '../helpers/proxy.ts'

t.test('shutdown after a reload drains the requests still on the replaced snapshot', async (t) => {
  let release: (() => void) | undefined
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('started ')
    release = () => { res.end('done') }
  })
  t.teardown(up.close)
  const proxy = await startTestProxy(simpleDoc(up.url))
  const res = await request(proxy.url)
  t.equal(res.statusCode, 200)
  const body = res.body.text().catch((err: Error) => err)
  const before = proxy.snapshot
  await proxy.reload(simpleDoc(up.url, { name: 'renamed' }))
  t.not(proxy.snapshot, before, 'the request runs on a snapshot that no longer serves')

  let stopped = false
  const stopping = proxy.shutdown(5000).then(() => { stopped = true })
  // What the drain would have cut, it has cut by now: closing is synchronous.
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(stopped, false, 'shutdown waits for it')
  ;(release as () => void)()
  t.equal(await body, 'started done', 'the response completed during the drain')
  await stopping
  t.equal(stopped, true)
})
