#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { createLogger, type Level } from '../src/log.ts'
import { hashToken, loadTokenFile, type TokenTable } from './auth.ts'
import { InvalidConfigError } from './errors.ts'
import { startControlPlane } from './server.ts'

const USAGE = `Usage:
  outrider-cp [--listen HOST:PORT] [--store FILE] (--token-file FILE | --no-auth) [options]
                                 serve the control plane
  outrider-cp hash-token TOKEN   print the sha256:… form of a token for a token file
  outrider-cp ctl COMMAND …      the operator CLI (outrider-cp ctl --help)
  outrider-cp --help

Options:
      --listen HOST:PORT   gRPC address (default 127.0.0.1:50051)
      --store FILE|URL     state file: config, history, audit log (default ./cp-store.json);
                           a redis://host:port URL shares it between replicas
      --token-file FILE    YAML/JSON: tokens: [{ name, role: viewer|operator|admin|data-plane, token | hash }]
      --no-auth            accept every caller as admin (development only)
      --tls-cert FILE      PEM certificate chain: serve TLS (with --tls-key)
      --tls-key FILE       PEM private key
      --tls-client-ca FILE require client certificates signed by this CA (mTLS)
      --seed FILE          when the store holds no config yet, start from this config file
      --history N          versions kept for rollback (default 100)
      --log-level L        debug | info | warn | error (default info)

Signals: SIGTERM/SIGINT end the data planes' streams (they keep serving and reconnect) and exit 0.`

/** Exit codes: 0 ok, 1 runtime failure, 2 usage or invalid input. */
async function main (argv: string[]): Promise<number> {
  // Its own flags: handed over before our parser would refuse them.
  if (argv[0] === 'ctl') {
    const { runCtl } = await import('./ctl.ts')
    return runCtl(argv.slice(1), { out: (s) => { process.stdout.write(`${s}\n`) }, err: (s) => { process.stderr.write(`${s}\n`) } })
  }
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        listen: { type: 'string', default: '127.0.0.1:50051' },
        store: { type: 'string', default: './cp-store.json' },
        'token-file': { type: 'string' },
        'no-auth': { type: 'boolean' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'tls-client-ca': { type: 'string' },
        seed: { type: 'string' },
        history: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help === true) { process.stdout.write(`${USAGE}\n`); return 0 }
  if (positionals[0] === 'hash-token') {
    if (positionals[1] === undefined) { process.stderr.write(`hash-token needs a TOKEN\n\n${USAGE}\n`); return 2 }
    process.stdout.write(`${hashToken(positionals[1])}\n`)
    return 0
  }
  if (positionals.length > 0) { process.stderr.write(`unknown command "${positionals[0]}"\n\n${USAGE}\n`); return 2 }
  const log = createLogger({ level: (values['log-level'] ?? process.env.OUTRIDER_LOG_LEVEL ?? 'info') as Level })

  let tokens: TokenTable | undefined
  if (values['token-file'] !== undefined) {
    try { tokens = await loadTokenFile(values['token-file']) } catch (err) { process.stderr.write(`${(err as Error).message}\n`); return 2 }
  } else if (values['no-auth'] !== true) {
    process.stderr.write(`--token-file is required (or --no-auth, for development only)\n\n${USAGE}\n`)
    return 2
  }
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) { process.stderr.write('--tls-cert and --tls-key go together\n'); return 2 }
  const history = values.history === undefined ? undefined : Number(values.history)
  if (history !== undefined && (!Number.isInteger(history) || history < 1)) { process.stderr.write(`--history must be a positive integer, got "${values.history}"\n`); return 2 }

  const cp = await startControlPlane({
    listen: values.listen,
    store: values.store,
    tokens,
    tls: values['tls-cert'] === undefined || values['tls-key'] === undefined ? undefined : { cert: values['tls-cert'], key: values['tls-key'], clientCa: values['tls-client-ca'] },
    historyLimit: history,
    log,
  })
  if (values.seed !== undefined && cp.desired.current === undefined) {
    try {
      const document: unknown = parseYaml(await readFile(values.seed, 'utf8'))
      const r = await cp.desired.change('seed', { action: 'put_config', document }, { message: `seeded from ${values.seed}` })
      log.info('store seeded', { file: values.seed, version: r.version })
    } catch (err) {
      process.stderr.write(err instanceof InvalidConfigError ? `${values.seed}: invalid config\n  ${err.message.replaceAll('\n', '\n  ')}\n` : `${values.seed}: ${(err as Error).message}\n`)
      await cp.close()
      return 2
    }
  }
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info(`${signal}: stopping`)
    cp.close().then(() => { process.exit(0) }, () => { process.exit(1) })
  }
  process.on('SIGTERM', () => { stop('SIGTERM') })
  process.on('SIGINT', () => { stop('SIGINT') })
  return -1
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`outrider-cp: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
