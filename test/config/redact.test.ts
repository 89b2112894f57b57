import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { redactConfig } from '../../src/config/redact.ts'

t.test('admin /config never shows secrets', async (t) => {
  const yaml = `
clusters:
  - name: c
    endpoints: [{ url: "http://127.0.0.1:9001" }]
routes:
  - name: r
    cluster: c
    plugins:
      - name: headers
        config: { request: { set: { authorization: "\${UPSTREAM_AUTH}", x-plain: visible } } }
`
  const config = parseConfig(yaml, 'x.yaml', { UPSTREAM_AUTH: 'Bearer hunter2' })
  const shown = JSON.stringify(redactConfig(config))
  t.notOk(shown.includes('hunter2'), 'a value from the environment is redacted')
  t.ok(shown.includes('[redacted]'))
  t.ok(shown.includes('visible'), 'ordinary values stay')
  t.ok(shown.includes('http://127.0.0.1:9001'))
})

t.test('credential-named fields and URL passwords', async (t) => {
  const out = redactConfig({ a: { clientSecret: 's3', password: 'p', url: 'redis://user:pw@host:6379/0', plain: 'x' } } as never) as { a: Record<string, string> }
  t.equal(out.a.clientSecret, '[redacted]')
  t.equal(out.a.password, '[redacted]')
  t.equal(out.a.url, 'redis://user:redacted@host:6379/0')
  t.equal(out.a.plain, 'x')
})
