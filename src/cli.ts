#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { availableParallelism, hostname } from 'node:os'
import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { loadConfigOffThread } from './config/off-thread.ts'
import { ConfigError } from './errors.ts'
import { LEVELS, createLogger, type Level } from './log.ts'
import { runSingle } from './run.ts'
import { readTlsFiles } from './tls.ts'
import { runPrimary, runWorker } from './workers.ts'

const USAGE = `Usage:
  outrider [--config FILE] [--workers N|auto]   run the proxy
  outrider --control-plane HOST:PORT [--node-id ID] [--labels k=v,…] [--cache-dir DIR]
                                                run the proxy on config pushed by outrider-cp
  outrider validate FILE                        check a config file and exit (0 valid, 2 invalid)
  outrider iptables [--print|--apply|--cleanup] ...  sidecar interception rules (see src/interception/README.md)
  outrider --version | --help

Options:
  -c, --config FILE     YAML or JSON config (default: $OUTRIDER_CONFIG or config/outrider.yaml)
  -w, --workers N|auto  worker processes sharing the listener (overrides the config's workers)
      --log-level L     debug | info | warn | error (default info)

Control plane (config comes from outrider-cp; no file is watched):
      --control-plane HOST:PORT  the control plane's gRPC address
      --node-id ID      this data plane's id (default: the host name)
      --labels k=v,…    labels the control plane sees for this node
      --cp-token T      data-plane bearer token (default: $OUTRIDER_CP_TOKEN)
      --cp-ca FILE      PEM CA of the control plane's certificate (TLS when set)
      --cp-cert FILE, --cp-key FILE  client certificate when the control plane requires mTLS
                        (TLS with them, against the system's roots without --cp-ca)
      --cache-dir DIR   keep the last config that applied here; served at start
                        when the control plane is down
  With --config FILE too, that file is served until the first config arrives
  (/ready answers 503 until then). Without a cache or a file, the proxy starts
  listening once the first config arrives (its address is part of it).

Signals: SIGHUP reloads the config; SIGTERM/SIGINT drain in-flight requests and exit 0.`

function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** Exit codes: 0 ok, 1 runtime failure, 2 invalid config or usage (like `nginx -t`). */
async function main (argv: string[]): Promise<number> {
  // Its own flags: handed over before our parser would refuse them.
  if (argv[0] === 'iptables') {
    const { runIptablesCommand } = await import('./interception/cli.ts')
    return runIptablesCommand(argv.slice(1))
  }
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        workers: { type: 'string', short: 'w' },
        'log-level': { type: 'string' },
        'control-plane': { type: 'string' },
        'node-id': { type: 'string' },
        labels: { type: 'string' },
        'cp-token': { type: 'string' },
        'cp-ca': { type: 'string' },
        'cp-cert': { type: 'string' },
        'cp-key': { type: 'string' },
        'cache-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help === true) { process.stdout.write(`${USAGE}\n`); return 0 }
  if (values.version === true) { process.stdout.write(`outrider ${version()}\n`); return 0 }
  const level = values['log-level'] ?? process.env.OUTRIDER_LOG_LEVEL ?? 'info'
  if (!(LEVELS as readonly string[]).includes(level)) {
    process.stderr.write(`--log-level (or OUTRIDER_LOG_LEVEL) must be one of ${LEVELS.join(', ')}, got "${level}"\n`)
    return 2
  }
  const log = createLogger({ level: level as Level })

  if (positionals[0] === 'validate') {
    const file = positionals[1] ?? values.config
    if (file === undefined) { process.stderr.write(`validate needs a FILE\n\n${USAGE}\n`); return 2 }
    try {
      const config = await loadConfigOffThread(file)
      await readTlsFiles(config, file)
      process.stdout.write(`${file}: valid (${config.clusters.length} clusters, ${config.routes.length} routes)\n`)
      return 0
    } catch (err) {
      return reportConfigError(err)
    }
  }
  if (positionals.length > 0) { process.stderr.write(`unknown command "${positionals[0]}"\n\n${USAGE}\n`); return 2 }
  if (values['control-plane'] !== undefined) return runManaged(values, log)

  const file = values.config ?? process.env.OUTRIDER_CONFIG ?? 'config/outrider.yaml'
  if (cluster.isWorker) { await runWorker(file, log.child({ worker: cluster.worker?.id })); return -1 }

  let config
  try {
    config = await loadConfigOffThread(file)
    // Before any worker is forked: one that cannot read them would only be restarted, and fail again.
    await readTlsFiles(config, file)
  } catch (err) {
    return reportConfigError(err)
  }
  let workers: number
  const w = values.workers ?? (config.workers === 'auto' ? 'auto' : String(config.workers))
  if (w === 'auto') workers = availableParallelism()
  else {
    workers = Number(w)
    if (!Number.isInteger(workers) || workers < 1) { process.stderr.write(`--workers must be a positive integer or auto, got "${w}"\n`); return 2 }
  }
  try {
    if (workers > 1) await runPrimary(file, config, workers, log)
    else await runSingle(file, config, log)
  } catch (err) {
    // A config that validates can still fail to build (a plugin's file): exit 2 like any config error.
    if (err instanceof ConfigError) return reportConfigError(err)
    throw err
  }
  return -1 // keeps running; signals decide the exit
}

/** `--control-plane`: one process (no workers yet), config from outrider-cp. */
async function runManaged (values: Record<string, string | boolean | undefined>, log: ReturnType<typeof createLogger>): Promise<number> {
  if (values.workers !== undefined && values.workers !== '1') { process.stderr.write('--workers is not supported with --control-plane yet (one process)\n'); return 2 }
  const address = String(values['control-plane']).trim()
  if (address === '') { process.stderr.write(`--control-plane needs the control plane's HOST:PORT\n\n${USAGE}\n`); return 2 }
  // Loaded only here: gRPC is not needed by a proxy that reads a file.
  const { parseLabels, runWithControlPlane } = await import('./control-plane-client.ts')
  let labels: Record<string, string>
  try { labels = parseLabels(String(values.labels ?? '')) } catch (err) { process.stderr.write(`${(err as Error).message}\n`); return 2 }
  let bootstrap
  if (typeof values.config === 'string') {
    try {
      bootstrap = await loadConfigOffThread(values.config)
      await readTlsFiles(bootstrap, values.config)
    } catch (err) {
      return reportConfigError(err)
    }
  }
  if ((values['cp-cert'] === undefined) !== (values['cp-key'] === undefined)) { process.stderr.write('--cp-cert and --cp-key go together\n'); return 2 }
  const pem: Record<'cp-ca' | 'cp-cert' | 'cp-key', Buffer | undefined> = { 'cp-ca': undefined, 'cp-cert': undefined, 'cp-key': undefined }
  for (const name of ['cp-ca', 'cp-cert', 'cp-key'] as const) {
    const f = values[name]
    if (typeof f !== 'string') continue
    try { pem[name] = readFileSync(f) } catch (err) { process.stderr.write(`--${name}: ${(err as Error).message}\n`); return 2 }
  }
  try {
    await runWithControlPlane({
      address,
      nodeId: typeof values['node-id'] === 'string' ? values['node-id'] : hostname(),
      labels,
      token: typeof values['cp-token'] === 'string' ? values['cp-token'] : process.env.OUTRIDER_CP_TOKEN,
      ca: pem['cp-ca'],
      cert: pem['cp-cert'],
      key: pem['cp-key'],
      cacheDir: typeof values['cache-dir'] === 'string' ? values['cache-dir'] : undefined,
      bootstrap,
      log,
    })
  } catch (err) {
    // A bootstrap config that validates can still fail to build (a plugin's file): exit 2 like any config error.
    if (err instanceof ConfigError) return reportConfigError(err)
    throw err
  }
  return -1 // keeps running; signals decide the exit
}

function reportConfigError (err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`)
    return 2
  }
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
  return 1
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`outrider: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
