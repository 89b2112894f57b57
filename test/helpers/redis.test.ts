import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { redisCommand, redisUnavailable, startRedis } from './redis.ts'

const skip = redisUnavailable()

t.test('starts a real redis-server, stops it like an outage and starts it again empty', { skip }, async (t) => {
  const redis = await startRedis(t)
  t.ok(redis.running)
  t.equal(await redis.command('PING'), 'PONG')
  t.equal(await redis.command('SET', 'k', 'v'), 'OK')
  t.equal(await redis.command('GET', 'k'), 'v')
  t.same(await redis.command('CONFIG', 'GET', 'save'), ['save', ''], 'no RDB snapshots')
  t.same(await redis.command('CONFIG', 'GET', 'appendonly'), ['appendonly', 'no'], 'no AOF')
  t.match(await redis.command('NOPE'), Error, 'an error reply decodes to an Error')

  await redis.stop()
  t.notOk(redis.running)
  await t.rejects(redis.command('PING'), 'nothing listens while stopped')

  await redis.start()
  t.ok(redis.running)
  t.equal(await redis.command('GET', 'k'), null, 'restarted empty, on the same port')

  redis.pause()
  await t.rejects(redisCommand(redis.port, ['PING'], 200), /did not answer/, 'a paused server holds the connection and says nothing')
  redis.resume()
  t.equal(await redis.command('PING'), 'PONG')

  const client = new Redis(redis.url, { lazyConnect: true })
  await client.connect()
  t.equal(await client.incr('n'), 1, 'ioredis talks to it')
  client.disconnect()
})

t.test('a one-node Redis Cluster that ioredis can use', { skip }, async (t) => {
  const redis = await startRedis(t, { cluster: true })
  t.match(await redis.command('CLUSTER', 'INFO'), /cluster_state:ok/)
  const cluster = new Cluster([{ host: '127.0.0.1', port: redis.port }])
  t.teardown(() => { cluster.disconnect() })
  await Promise.all(['a', 'b', 'c', 'user:1', 'user:2'].map((k) => cluster.set(k, k)))
  t.equal(await cluster.get('user:2'), 'user:2', 'keys in every slot are served')
})

t.test('tells why it cannot run when redis-server is missing', async (t) => {
  const { spawnSync } = await import('node:child_process')
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
    const { redisUnavailable } = await import(${JSON.stringify(new URL('./redis.ts', import.meta.url).href)})
    process.stdout.write(String(redisUnavailable()))
  `], { env: { ...process.env, OUTRIDER_REDIS_SERVER: '/nonexistent/redis-server' }, encoding: 'utf8' })
  t.match(r.stdout, /is not installed or does not run/)
})
