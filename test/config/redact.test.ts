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

t.test('a value from the environment stays hidden where the schema moved it or an alias copied it', async (t) => {
  const yaml = `
clusters: [{ name: c, endpoints: [{ url: "http://127.0.0.1:9" }] }]
routes:
  - name: r
    cluster: c
    match:
      headers:
        X-Shared-Secret-Value: "\${HDR}"
    plugins:
      - name: headers
        config:
          request:
            set:
              Authorization: &auth "Bearer \${UP_TOKEN}"
              Cookie: "session=\${UP_TOKEN}"
  - name: r2
    cluster: c
    plugins:
      - name: headers
        config: { request: { set: { x-auth-copy: *auth } } }
`
  const config = parseConfig(yaml, 'x.yaml', { UP_TOKEN: 's3cr3t-bearer', HDR: 'hunter2' })
  const shown = JSON.stringify(redactConfig(config))
  t.notOk(shown.includes('s3cr3t'), 'not under a lower-cased key, not in a cookie, not through an alias')
  t.notOk(shown.includes('hunter2'), 'not in a header match')
})

t.test('literal credentials: an Authorization or Cookie a plugin sends, a JWK\'s secret members', async (t) => {
  const out = redactConfig({
    set: { authorization: 'Bearer literal', cookie: 'session=abc', 'x-plain': 'x' },
    hashOn: { by: 'cookie', cookie: 'session' },
    keys: [{ type: 'jwk', jwk: { kty: 'oct', k: 'c2VjcmV0', kid: 'hs' } }, { type: 'jwk', jwk: { kty: 'RSA', n: 'modulus', e: 'AQAB', d: 'private' } }],
  } as never) as { set: Record<string, string>, hashOn: Record<string, string>, keys: Array<{ jwk: Record<string, string> }> }
  t.same(out.set, { authorization: '[redacted]', cookie: '[redacted]', 'x-plain': 'x' })
  t.equal(out.hashOn.cookie, 'session', 'a cookie\'s name is not a secret')
  t.same([out.keys[0]?.jwk.k, out.keys[0]?.jwk.kid, out.keys[1]?.jwk.d, out.keys[1]?.jwk.n], ['[redacted]', 'hs', '[redacted]', 'modulus'])
})

t.test('hiding by value takes only what the environment gave, and not short words', async (t) => {
  const yaml = `
clusters: [{ name: api, loadBalancer: { policy: "\${LB_POLICY:-round_robin}" }, endpoints: [{ url: "http://127.0.0.1:9" }] }]
routes:
  - name: "\${ROUTE_NAME:-api}"
    cluster: api
  - name: other
    cluster: api
    plugins: [{ name: headers, config: { request: { set: { x-level: "\${LEVEL}" } } } }]
clusters_note: unused
`.replace('clusters_note: unused\n', '')
  const config = parseConfig(yaml, 'x.yaml', { LEVEL: 'info' })
  const shown = redactConfig(config) as { clusters: Array<{ name: string }>, routes: Array<{ name: string, cluster: string }> }
  t.equal(shown.clusters[0]?.name, 'api', 'a default from the file hides nothing elsewhere')
  t.equal(shown.routes[1]?.cluster, 'api')
  t.equal(shown.routes[0]?.name, '[redacted]', 'its own field stays hidden')
  t.notOk(JSON.stringify(shown).includes('"info"'), 'the environment value itself is hidden at its path')
})
