/**
 * Outrider as the bench runs it: `startProxy` from the source, one route to one
 * upstream, no admin listener. Deliberately not the CLI, so the bench measures
 * the data plane and does not depend on CLI flags or config-file loading.
 *
 *   node bench/outrider-proc.ts --upstream http://127.0.0.1:9001 [--port 0] [--workers 1]
 *                               [--plugins '[{"name":"headers","config":{…}}]']
 *
 * With `--workers N` (N > 1) this process becomes a node:cluster primary that
 * forks N workers, each binding the same port with SO_REUSEPORT: the kernel
 * spreads connections, as the CLI does for `workers: N`.
 */
import cluster from 'node:cluster'
import net from 'node:net'
import { parseArgs } from 'node:util'
import { configSchema } from '../src/config/schema.ts'
import { startProxy, type RunningProxy } from '../src/proxy.ts'
import { createLogger, type Level } from '../src/log.ts'
import { announceReady, exitWithParent, intFlag } from './child.ts'

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    upstream: { type: 'string' },
    workers: { type: 'string' },
    plugins: { type: 'string' },
  },
})
const upstream = values.upstream
if (upstream === undefined) throw new Error('--upstream URL is required')
const workers = Math.max(1, intFlag(values.workers, 'workers', 1))
const plugins: unknown = JSON.parse(values.plugins ?? '[]')

/** Message a worker sends its primary once it listens. */
interface WorkerReady { ready: true, port: number }

if (workers > 1 && cluster.isPrimary) await runPrimary()
else await runWorker()

async function runWorker (): Promise<void> {
  const port = Number(process.env.BENCH_WORKER_PORT ?? intFlag(values.port, 'port', 0))
  // Parsed by the product's own schema, so defaults match a config file's.
  const config = configSchema.parse({
    listen: { host: '127.0.0.1', port },
    admin: { enabled: false },
    workers,
    clusters: [{ name: 'origin', endpoints: [{ url: upstream }] }],
    routes: [{ name: 'all', match: { pathPrefix: '/' }, cluster: 'origin', plugins }],
  })
  const log = createLogger({ level: (process.env.OUTRIDER_LOG_LEVEL as Level | undefined) ?? 'warn' })
  const proxy: RunningProxy = await startProxy({ config, source: 'bench', log, admin: false, reusePort: workers > 1 })
  if (cluster.isWorker) {
    const ready: WorkerReady = { ready: true, port: proxy.port }
    process.send?.(ready)
    // A cluster worker exits by itself when its primary disconnects.
    process.once('SIGTERM', () => { void proxy.shutdown(0).finally(() => process.exit(0)) })
    return
  }
  announceReady({ ready: 'outrider', port: proxy.port, pids: [process.pid] })
  exitWithParent()
}

async function runPrimary (): Promise<void> {
  // Every worker must bind the same port: with port 0 each would get its own.
  const port = intFlag(values.port, 'port', 0) || await freePort()
  const pids: number[] = []
  let exiting = false
  const started = new Promise<void>((resolve, reject) => {
    for (let i = 0; i < workers; i++) {
      const worker = cluster.fork({ BENCH_WORKER_PORT: String(port) })
      worker.on('message', (msg: WorkerReady) => {
        if (msg.ready !== true) return
        pids.push(worker.process.pid ?? 0)
        if (pids.length === workers) resolve()
      })
      worker.on('exit', (code) => {
        if (exiting) return
        reject(new Error(`worker ${i} exited with ${code}`))
      })
    }
  })
  const stopWorkers = (): void => {
    exiting = true
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM')
  }
  try {
    await started
  } catch (err) {
    stopWorkers()
    throw err
  }
  announceReady({ ready: `outrider x${workers}`, port, pids })
  exitWithParent(stopWorkers)
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => { resolve(port) })
    })
  })
}
