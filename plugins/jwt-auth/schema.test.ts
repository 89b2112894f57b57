import t from 'tap'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { schema, JWKS_DEFAULTS } from './schema.ts'

function issues (input: unknown): Array<{ path: Array<string | number>, message: string }> {
  const r = schema.safeParse(input)
  if (r.success) return []
  return r.error.issues.map((i) => ({ path: i.path as Array<string | number>, message: i.message }))
}

function paths (input: unknown): Array<Array<string | number>> {
  return issues(input).map((i) => i.path)
}

const JWKS = 'https://idp.example/.well-known/jwks.json'
const SECRET = 'x'.repeat(32)
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const RSA_PEM = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string
const RSA_JWK = rsa.publicKey.export({ format: 'jwk' })
const EC_JWK = ec.publicKey.export({ format: 'jwk' })

t.test('fills every default around the one required choice, the key source', async (t) => {
  t.same(schema.parse({ jwksUrl: JWKS }), {
    jwksUrl: JWKS,
    algorithms: ['RS256', 'ES256', 'EdDSA'],
    clockSkew: 30_000,
    requireExp: true,
    subjectClaim: 'sub',
    requiredClaims: [],
    requiredScopes: [],
    tokenFrom: { from: 'bearer' },
    forwardClaims: {},
    forwardToken: true,
    realm: 'outrider',
  })
  t.same(JWKS_DEFAULTS, { cooldown: 30_000, timeout: 5_000, minRefresh: 60_000, maxRefresh: 86_400_000, defaultRefresh: 600_000 })
  t.same(schema.parse({ jwksUrl: JWKS, jwks: { cooldown: '5s' } }).jwks, { ...JWKS_DEFAULTS, cooldown: 5_000 })
})

t.test('accepts the architecture example and the documented shapes', async (t) => {
  t.ok(schema.safeParse({ jwksUrl: JWKS, issuer: 'https://idp.example/', audience: 'users' }).success)
  const c = schema.parse({
    jwksUrl: 'http://127.0.0.1:8080/jwks',
    issuer: ['https://a.example/', 'https://b.example/'],
    audience: ['api', 'admin'],
    clockSkew: '10s',
    maxAge: '1h',
    typ: 'at+jwt',
    requiredClaims: { email_verified: true, tenant: ['acme', 'globex'] },
    requiredScopes: ['orders:read', 'orders:write'],
    tokenFrom: { from: 'cookie', name: 'session' },
    forwardClaims: { sub: 'X-User-Id', email: 'x-user-email' },
    forwardToken: false,
    realm: 'orders',
  })
  t.equal(c.clockSkew, 10_000)
  t.equal(c.maxAge, 3_600_000)
  t.same(c.forwardClaims, { sub: 'x-user-id', email: 'x-user-email' }, 'header names lower-cased')
  t.ok(schema.safeParse({ jwksUrl: 'http://localhost:9000/jwks' }).success, 'loopback http')
  t.ok(schema.safeParse({ jwksUrl: JWKS, requiredClaims: ['email', 'tenant'] }).success)
  t.ok(schema.safeParse({ jwksUrl: JWKS, tokenFrom: { from: 'header', name: 'X-Token' } }).success)
})

t.test('accepts local keys of each kind', async (t) => {
  t.ok(schema.safeParse({ keys: [{ type: 'pem', pem: RSA_PEM, kid: 'r1' }] }).success, 'PEM SPKI')
  t.ok(schema.safeParse({ keys: [{ type: 'pem', pem: rsa.publicKey.export({ type: 'pkcs1', format: 'pem' }) }] }).success, 'PEM PKCS#1')
  t.ok(schema.safeParse({ keys: [{ type: 'jwk', jwk: { ...RSA_JWK, kid: 'r1' } }, { type: 'jwk', jwk: EC_JWK }] }).success, 'JWKs')
  t.ok(schema.safeParse({ keys: [{ type: 'secret', secret: SECRET }], algorithms: ['HS256'] }).success, 'utf8 secret')
  t.ok(schema.safeParse({ keys: [{ type: 'secret', secret: randomBytes(64).toString('base64'), encoding: 'base64' }], algorithms: ['HS512'] }).success)
  t.ok(schema.safeParse({ keys: [{ type: 'jwk', jwk: { kty: 'oct', k: randomBytes(32).toString('base64url') } }], algorithms: ['HS256'] }).success, 'oct JWK')
})

t.test('never accepts alg "none", in any case', async (t) => {
  for (const none of ['none', 'None', 'NONE']) {
    const r = issues({ jwksUrl: JWKS, algorithms: ['RS256', none] })
    t.same(r.map((i) => i.path), [['algorithms', 1]], none)
    t.match(r[0]?.message, /never "none".*RFC 8725/)
  }
  t.same(paths({ jwksUrl: JWKS, algorithms: ['RS1'] }), [['algorithms', 0]])
  t.same(paths({ jwksUrl: JWKS, algorithms: [] }), [['algorithms']])
  t.same(paths({ jwksUrl: JWKS, algorithms: ['RS256', 'RS256'] }), [['algorithms', 1]])
})

t.test('refuses HMAC with public keys and public-key algorithms with secrets', async (t) => {
  const mix = issues({ jwksUrl: JWKS, algorithms: ['RS256', 'HS256'] })
  t.same(mix.map((i) => i.path), [['algorithms', 1]], 'HS with a JWKS')
  t.match(mix[0]?.message, /algorithm confusion/)
  t.same(paths({ keys: [{ type: 'pem', pem: RSA_PEM }], algorithms: ['HS256', 'RS256'] }), [['algorithms', 0]], 'HS with a PEM key')
  t.same(paths({ keys: [{ type: 'secret', secret: SECRET }] }), [['algorithms', 0], ['algorithms', 1], ['algorithms', 2]], 'a secret with the default (asymmetric) algorithms')
  t.same(paths({ keys: [{ type: 'secret', secret: SECRET }, { type: 'pem', pem: RSA_PEM }], algorithms: ['HS256'] }), [['keys', 1]], 'secrets and public keys mixed')
})

t.test('requires exactly one key source', async (t) => {
  t.same(paths({}), [[]])
  t.same(paths({ jwksUrl: JWKS, keys: [{ type: 'pem', pem: RSA_PEM }] }), [['keys']])
  t.same(paths({ keys: [] }), [['keys']])
  t.same(paths({ keys: [{ type: 'pem', pem: RSA_PEM }], jwks: { cooldown: '1s' } }), [['jwks']], 'jwks options without a jwksUrl')
})

t.test('refuses a JWKS URL that is not https (except to loopback)', async (t) => {
  t.same(paths({ jwksUrl: 'http://idp.example/jwks' }), [['jwksUrl']])
  t.same(paths({ jwksUrl: 'ftp://idp.example/jwks' }), [['jwksUrl']])
  t.same(paths({ jwksUrl: 'not a url' }), [['jwksUrl']])
})

t.test('refuses unusable, private or malformed local keys', async (t) => {
  t.same(paths({ keys: [{ type: 'pem', pem: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) }] }), [['keys', 0, 'pem']], 'a private PEM')
  t.same(paths({ keys: [{ type: 'pem', pem: '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----' }] }), [['keys', 0, 'pem']])
  t.same(paths({ keys: [{ type: 'jwk', jwk: rsa.privateKey.export({ format: 'jwk' }) }] }), [['keys', 0, 'jwk']], 'a private JWK')
  t.same(paths({ keys: [{ type: 'jwk', jwk: { kty: 'RSA', n: 'AQAB' } }] }), [['keys', 0, 'jwk']], 'an RSA JWK without e')
  t.same(paths({ keys: [{ type: 'jwk', jwk: { kty: 'XYZ' } }] }), [['keys', 0, 'jwk', 'kty']])
  t.same(paths({ keys: [{ type: 'jwk', jwk: EC_JWK }], algorithms: ['RS256'] }), [['keys', 0]], 'a P-256 key with RS256 only')
  t.same(paths({ keys: [{ type: 'jwk', jwk: { ...RSA_JWK, alg: 'PS256' } }], algorithms: ['RS256'] }), [['keys', 0]], 'the JWK\'s own alg is not allowed')
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey
  t.same(paths({ keys: [{ type: 'pem', pem: weak.export({ type: 'spki', format: 'pem' }) }] }), [['keys', 0, 'pem']], 'RSA under 2048 bits')
  t.same(paths({ keys: [{ type: 'jwk', jwk: weak.export({ format: 'jwk' }) }] }), [['keys', 0, 'jwk']], 'RSA JWK under 2048 bits')
  t.same(paths({ keys: [{ type: 'cert', pem: RSA_PEM }] }), [['keys', 0, 'type']])
  t.same(paths({ keys: [{ type: 'pem', pem: RSA_PEM, extra: 1 }] }), [['keys', 0]])
})

t.test('refuses HMAC secrets shorter than the hash (RFC 7518 §3.2)', async (t) => {
  t.same(paths({ keys: [{ type: 'secret', secret: 'short' }], algorithms: ['HS256'] }), [['keys', 0, 'secret']])
  t.same(paths({ keys: [{ type: 'secret', secret: SECRET }], algorithms: ['HS256', 'HS512'] }), [['keys', 0, 'secret']], '32 bytes for HS512')
  t.same(paths({ keys: [{ type: 'secret', secret: 'zz', encoding: 'hex' }], algorithms: ['HS256'] }), [['keys', 0, 'secret']], 'not hex')
  t.same(paths({ keys: [{ type: 'jwk', jwk: { kty: 'oct', k: 'c2hvcnQ' } }], algorithms: ['HS256'] }), [['keys', 0, 'jwk', 'k']])
  const r = issues({ keys: [{ type: 'secret', secret: 'short' }], algorithms: ['HS256'] })
  t.notMatch(JSON.stringify(schema.safeParse({ keys: [{ type: 'secret', secret: 'short-secret-value' }], algorithms: ['HS256'] })), /short-secret-value"/, 'the secret is not echoed in the issue input')
  t.match(r[0]?.message, /at least 32 bytes/)
})

t.test('refuses bad token sources, claim headers and scopes', async (t) => {
  t.same(paths({ jwksUrl: JWKS, tokenFrom: { from: 'query', name: 'access_token' } }), [['tokenFrom', 'from']])
  t.same(paths({ jwksUrl: JWKS, tokenFrom: { from: 'header' } }), [['tokenFrom', 'name']])
  t.same(paths({ jwksUrl: JWKS, tokenFrom: { from: 'bearer', name: 'x' } }), [['tokenFrom']])
  t.same(paths({ jwksUrl: JWKS, tokenFrom: { from: 'cookie', name: 'a b' } }), [['tokenFrom', 'name']])
  t.same(paths({ jwksUrl: JWKS, forwardClaims: { sub: 'x user' } }), [['forwardClaims', 'sub']])
  t.same(paths({ jwksUrl: JWKS, forwardClaims: { sub: 'Host' } }), [['forwardClaims', 'sub']])
  t.same(paths({ jwksUrl: JWKS, forwardClaims: { sub: 'authorization' } }), [['forwardClaims', 'sub']])
  t.same(paths({ jwksUrl: JWKS, forwardClaims: { sub: 'x-user', email: 'X-User' } }), [['forwardClaims', 'email']], 'two claims, one header')
  t.same(paths({ jwksUrl: JWKS, tokenFrom: { from: 'header', name: 'x-token' }, forwardClaims: { sub: 'x-token' } }), [['forwardClaims', 'sub']], 'the token header itself')
  t.same(paths({ jwksUrl: JWKS, requiredScopes: ['a b'] }), [['requiredScopes', 0]])
  t.same(paths({ jwksUrl: JWKS, requiredScopes: ['a"b'] }), [['requiredScopes', 0]])
  t.same(paths({ jwksUrl: JWKS, realm: 'a"b' }), [['realm']])
  t.same(paths({ jwksUrl: JWKS, clockSkew: '10m' }), [['clockSkew']])
  t.same(paths({ jwksUrl: JWKS, jwks: { minRefresh: '1m', maxRefresh: '30s' } }), [['jwks', 'maxRefresh']])
  t.same(paths({ jwksUrl: JWKS, jwks: { minRefresh: 10 } }), [['jwks', 'minRefresh']])
  t.same(paths({ jwksUrl: JWKS, audiences: ['x'] }), [[]], 'unknown key')
})

t.test('inside a config file: full paths, and the secret from the environment', async (t) => {
  const { parseConfig } = await import('../../src/config/load.ts')
  const { ConfigError } = await import('../../src/errors.ts')
  const doc = (plugin: string): string => [
    'clusters: [{ name: up, endpoints: [{ url: "http://127.0.0.1:9001" }] }]',
    'routes:',
    '  - name: api',
    '    cluster: up',
    '    plugins:',
    '      - name: headers',
    `      - ${plugin}`,
  ].join('\n')
  const err = (() => {
    try {
      parseConfig(doc(`{ name: jwt-auth, config: { jwksUrl: "${JWKS}", algorithms: [RS256, none] } }`), 'outrider.yaml', {})
    } catch (e) { return e }
  })()
  t.ok(err instanceof ConfigError)
  t.equal((err as InstanceType<typeof ConfigError>).path, 'routes[0].plugins[1].config.algorithms[1]')
  t.match((err as InstanceType<typeof ConfigError>).expected, /never "none"/)

  const c = parseConfig(doc('{ name: jwt-auth, config: { keys: [{ type: secret, secret: "${JWT_SECRET}" }], algorithms: [HS256] } }'), 'outrider.yaml', { JWT_SECRET: SECRET })
  const entry = c.routes[0]?.plugins[1] as { name: string, config: { keys: Array<{ secret: string }> } }
  t.equal(entry.config.keys[0]?.secret, SECRET)
})
