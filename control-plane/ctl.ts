import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { createOperatorClient, sendsTokenInClear, type CallError, type OperatorClient } from './operator-client.ts'
import type * as pb from './generated/types.ts'
import { parseLabels } from '../src/control-plane-client.ts'

export const CTL_USAGE = `Usage: outrider-cp ctl [connection] COMMAND [options]

Connection:
      --server HOST:PORT   the control plane (default: $OUTRIDER_CP_ADDRESS or 127.0.0.1:50051)
      --token T            bearer token (default: $OUTRIDER_CP_TOKEN)
      --ca FILE            PEM CA of the control plane's certificate: TLS
      --cert FILE --key FILE  client certificate for mTLS
      --json               print the raw answers as JSON

Commands:
  routes list | get NAME | put FILE [--before NAME] | delete NAME
  clusters list | get NAME | put FILE | delete NAME
  overlays list | put FILE | delete NAME
  config get [--version N] [--labels k=v,…] | put FILE | validate FILE
  apply FILE                  clusters, routes, overlays and rules from one YAML/JSON file
  history [--limit N]         retained versions
  rollback VERSION            make VERSION's config current again (a new version)
  audit [--limit N]           who changed what
  fleet                       data planes, the version each runs, NACKs
  analytics [--route R] [--window 1m|5m|1h]
  series ROUTE [--step S] [--limit N]
  forecast ROUTE [--horizon 1h] [--level 0.9]
  rules list | put FILE | delete NAME | backtest NAME|--file FILE [--range 7d] [--step S]
  weight-hints list [CLUSTER] | set CLUSTER URL=WEIGHT… [--replace]   (weight 0 clears)

Changes take --dry-run, --message M and --if-version N (refused unless N is current).
FILE is YAML or JSON: one object or a list. Exit codes: 0 ok, 1 refused or failed, 2 usage.`

const OPTIONS = {
  server: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  message: { type: 'string' },
  'if-version': { type: 'string' },
  before: { type: 'string' },
  version: { type: 'string' },
  labels: { type: 'string' },
  limit: { type: 'string' },
  route: { type: 'string' },
  window: { type: 'string' },
  step: { type: 'string' },
  horizon: { type: 'string' },
  level: { type: 'string' },
  range: { type: 'string' },
  file: { type: 'string' },
  replace: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS, allowPositionals: true }>>['values']

export interface CtlIo {
  out: (text: string) => void
  err: (text: string) => void
  env?: NodeJS.ProcessEnv
}

class UsageError extends Error {}

/**
 * `outrider-cp ctl …`: the Operator API from a shell. Returns the exit code.
 *
 * @example
 * await runCtl(['--server', 'cp:50051', 'routes', 'put', 'api.yaml', '--message', 'new api'], { out: console.log, err: console.error })
 */
export async function runCtl (argv: string[], io: CtlIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS })
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${CTL_USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help === true || positionals.length === 0) { (values.help === true ? io.out : io.err)(CTL_USAGE); return values.help === true ? 0 : 2 }
  const env = io.env ?? process.env
  let op: OperatorClient
  try {
    const address = values.server ?? env.OUTRIDER_CP_ADDRESS ?? '127.0.0.1:50051'
    const options = {
      token: values.token ?? env.OUTRIDER_CP_TOKEN,
      ca: values.ca === undefined ? undefined : await readFile(values.ca),
      cert: values.cert === undefined ? undefined : await readFile(values.cert),
      key: values.key === undefined ? undefined : await readFile(values.key),
    }
    op = createOperatorClient(address, options)
    if (sendsTokenInClear(address, options)) io.err(`warning: the token goes to ${address} in plaintext; give --ca (or --cert/--key) for TLS`)
  } catch (err) {
    io.err((err as Error).message)
    return 2
  }
  try {
    const result = await command(op, positionals, values)
    if (result !== undefined) io.out(values.json === true ? JSON.stringify(result.raw, null, 2) : result.text)
    return 0
  } catch (err) {
    if (err instanceof UsageError) { io.err(`${err.message}\n\n${CTL_USAGE}`); return 2 }
    const e = err as CallError
    if (typeof e.code === 'number') {
      io.err(`refused (${statusName(e.code)}): ${e.details}`)
      for (const i of e.issues ?? []) io.err(`  ${i.path || '(document)'}: ${i.expected}`)
      return 1
    }
    io.err(e.message)
    return 1
  } finally {
    op.close()
  }
}

interface Output { raw: unknown, text: string }

async function command (op: OperatorClient, args: string[], v: Values): Promise<Output | undefined> {
  const [noun, verb, ...rest] = args
  const options = (): pb.ChangeOptions => ({ dryRun: v['dry-run'] === true, ifVersion: v['if-version'] === undefined ? 0 : int(v['if-version'], '--if-version'), message: v.message ?? '' })
  const arg = (i: number, what: string): string => {
    const a = rest[i] ?? (i === -1 ? verb : undefined)
    if (a === undefined) throw new UsageError(`${noun} ${verb ?? ''}: ${what} missing`)
    return a
  }
  switch (noun) {
    case 'routes':
    case 'clusters':
    case 'overlays': {
      const kind = noun.slice(0, -1) as 'route' | 'cluster' | 'overlay'
      switch (verb) {
        case 'list': {
          const r = kind === 'route' ? (await op.listRoutes({})).routesJson : kind === 'cluster' ? (await op.listClusters({})).clustersJson : (await op.listOverlays({})).overlaysJson
          const items = r.map((j) => JSON.parse(j) as Record<string, unknown>)
          return { raw: items, text: items.map((x) => `${String(x.name)}\t${summarise(kind, x)}`).join('\n') || `(no ${noun})` }
        }
        case 'get': {
          if (kind === 'overlay') throw new UsageError('overlays get: use overlays list --json')
          const name = arg(0, 'NAME')
          const json = kind === 'route' ? (await op.getRoute({ name })).routeJson : (await op.getCluster({ name })).clusterJson
          return { raw: JSON.parse(json), text: JSON.stringify(JSON.parse(json), null, 2) }
        }
        case 'put': {
          const results: pb.ChangeResponse[] = []
          for (const item of await readItems(arg(0, 'FILE'))) {
            const json = JSON.stringify(item)
            results.push(kind === 'route'
              ? await op.putRoute({ routeJson: json, before: v.before ?? '', options: options() })
              : kind === 'cluster' ? await op.putCluster({ clusterJson: json, options: options() }) : await op.putOverlay({ overlayJson: json, options: options() }))
          }
          return { raw: results, text: results.map(changeText).join('\n') }
        }
        case 'delete': {
          const name = arg(0, 'NAME')
          const r = kind === 'route' ? await op.deleteRoute({ name, options: options() }) : kind === 'cluster' ? await op.deleteCluster({ name, options: options() }) : await op.deleteOverlay({ name, options: options() })
          return { raw: r, text: changeText(r) }
        }
      }
      throw new UsageError(`${noun}: list, get, put or delete`)
    }
    case 'config': {
      if (verb === 'get') {
        const labels = v.labels === undefined ? {} : parseLabels(v.labels)
        const r = await op.getConfig({ version: v.version === undefined ? 0 : int(v.version, '--version'), labels, compose: v.labels !== undefined })
        return { raw: r, text: `# v${r.version} by ${r.author} at ${r.createdAt}${r.overlays.length > 0 ? ` with overlays ${r.overlays.join(', ')}` : ''}\n${r.configJson === '' ? '' : JSON.stringify(JSON.parse(r.configJson), null, 2)}` }
      }
      if (verb === 'put') {
        const [doc] = await readItems(arg(0, 'FILE'))
        const r = await op.putConfig({ configJson: JSON.stringify(doc), options: options() })
        return { raw: r, text: changeText(r) }
      }
      if (verb === 'validate') {
        const [doc] = await readItems(arg(0, 'FILE'))
        const r = await op.validateConfig({ configJson: JSON.stringify(doc) })
        if (!r.valid) throw Object.assign(new Error('invalid'), { code: 3, details: 'the document is invalid', issues: r.issues })
        return { raw: r, text: `valid (sha256 ${r.contentHash})` }
      }
      throw new UsageError('config: get, put or validate')
    }
    case 'apply': {
      const file = verb ?? ''
      if (file === '') throw new UsageError('apply: FILE missing')
      const [doc] = await readItems(file)
      const d = (doc ?? {}) as Record<string, unknown[] | undefined>
      if (v['dry-run'] === true) return dryApply(op, d)
      const lines: string[] = []
      const raw: unknown[] = []
      for (const c of d.clusters ?? []) { const r = await op.putCluster({ clusterJson: JSON.stringify(c), options: options() }); raw.push(r); lines.push(`cluster ${name(c)}: ${changeText(r)}`) }
      for (const c of d.routes ?? []) { const r = await op.putRoute({ routeJson: JSON.stringify(c), options: options() }); raw.push(r); lines.push(`route ${name(c)}: ${changeText(r)}`) }
      for (const c of d.overlays ?? []) { const r = await op.putOverlay({ overlayJson: JSON.stringify(c), options: options() }); raw.push(r); lines.push(`overlay ${name(c)}: ${changeText(r)}`) }
      for (const c of d.rules ?? []) { const r = await op.putRule({ ruleJson: JSON.stringify(c), dryRun: false, message: v.message ?? '' }); raw.push(r); lines.push(`rule ${name(c)}: ${r.changed ? 'stored' : 'unchanged'}`) }
      return { raw, text: lines.join('\n') || 'nothing to apply (no clusters, routes, overlays or rules)' }
    }
    case 'history': {
      const r = await op.listHistory({ limit: limit(v) })
      return { raw: r, text: r.entries.map((e) => `v${e.version}\t${e.createdAt}\t${e.author}\t${e.action}\t${e.summary}${e.message === '' ? '' : `\t"${e.message}"`}`).join('\n') }
    }
    case 'rollback': {
      const r = await op.rollback({ version: int(verb ?? '', 'VERSION'), options: options() })
      return { raw: r, text: changeText(r) }
    }
    case 'audit': {
      const r = await op.listAudit({ limit: limit(v) })
      return { raw: r, text: r.entries.map((e) => `#${e.seq}\t${e.at}\t${e.actor}\t${e.action}\t${e.target}\tv${e.fromVersion}→v${e.toVersion}\t${e.summary}`).join('\n') }
    }
    case 'fleet': {
      const r = await op.getFleet({})
      return {
        raw: r,
        text: [`current v${r.currentVersion}`, ...r.nodes.map((n) => `${n.nodeId}\t${n.connected ? 'connected' : 'gone'}\tv${n.ackedVersion || '-'}${n.inSync ? ' (in sync)' : ''}\t${Object.entries(n.labels).map(([k, x]) => `${k}=${x}`).join(',')}${n.nackedVersion === '' ? '' : `\tNACKed v${n.nackedVersion}: ${n.nackError?.message ?? ''}`}`)].join('\n'),
      }
    }
    case 'analytics': {
      const r = await op.getAnalytics({ route: v.route ?? '', window: v.window ?? '' })
      const head = 'route\trate/s\terrors\tp50 ms\tp90 ms\tp99 ms\tnodes'
      return { raw: r, text: [head, ...r.routes.map((x) => `${x.route}\t${fixed(x.rate)}\t${fixed(x.errorRatio * 100)}%\t${fixed(x.p50Ms)}\t${fixed(x.p90Ms)}\t${fixed(x.p99Ms)}\t${x.nodes}`)].join('\n') }
    }
    case 'series': {
      const r = await op.getSeries({ route: verb ?? '', stepSeconds: v.step === undefined ? 0 : int(v.step, '--step'), limit: limit(v) })
      return { raw: r, text: r.points.map((p) => `${new Date(p.t * 1000).toISOString()}\t${p.requests}\t${p.errors}\t${p.p99Ms === undefined ? '-' : fixed(p.p99Ms)}`).join('\n') }
    }
    case 'forecast': {
      if (verb === undefined) throw new UsageError('forecast: ROUTE missing')
      const r = await op.getForecast({ route: verb, horizon: v.horizon ?? '', level: v.level === undefined ? 0 : Number(v.level) })
      return {
        raw: r,
        text: [
          `${r.route}: ${r.model} over ${r.observations} × ${r.stepSeconds}s; last ${fixed(r.lastRate)}/s; anomaly ${fixed(r.anomalyScore)}${r.anomalous ? ' ALERT' : ''}`,
          ...r.points.map((p) => `${new Date(p.t * 1000).toISOString()}\t${fixed(p.rate)}/s\t[${fixed(p.lo)}, ${fixed(p.hi)}]`),
        ].join('\n'),
      }
    }
    case 'rules': {
      switch (verb) {
        case 'list': {
          const r = await op.listRules({})
          return { raw: r, text: r.rules.map((x) => `${x.name}\t${x.holding ? 'holding' : 'idle'}\tfired ${x.firings}×${x.lastFiredAt === '' ? '' : ` (last ${x.lastFiredAt})`}${x.alertsDelivered + x.alertsFailed === 0 ? '' : `\talerts ${x.alertsDelivered} ok, ${x.alertsFailed} failed`}\t${x.ruleJson}`).join('\n') || '(no rules)' }
        }
        case 'put': {
          const out: pb.PutRuleResponse[] = []
          for (const item of await readItems(arg(0, 'FILE'))) out.push(await op.putRule({ ruleJson: JSON.stringify(item), dryRun: v['dry-run'] === true, message: v.message ?? '' }))
          return { raw: out, text: out.map((r) => r.changed ? 'stored' : 'unchanged').join('\n') }
        }
        case 'delete': {
          const r = await op.deleteRule({ name: arg(0, 'NAME'), dryRun: v['dry-run'] === true, message: v.message ?? '' })
          return { raw: r, text: 'deleted' }
        }
        case 'backtest': {
          const [rule] = v.file === undefined ? [undefined] : await readItems(v.file)
          const r = await op.backtestRule({ name: rule === undefined ? arg(0, 'NAME (or --file FILE)') : '', ruleJson: rule === undefined ? '' : JSON.stringify(rule), range: v.range ?? '', stepSeconds: v.step === undefined ? 0 : int(v.step, '--step') })
          return {
            raw: r,
            text: [`would have fired ${r.firings.length} time(s) in ${r.evaluations} intervals of ${r.stepSeconds}s`,
              ...r.firings.map((f) => `${f.at}\t${Object.entries(f.values).map(([c, x]) => `${c} (${fixed(x)})`).join(', ')}\t${f.changes.map((c) => `${c.path}: ${c.beforeJson} → ${c.afterJson}`).join('; ')}${f.errors.length > 0 ? `\terrors: ${f.errors.join('; ')}` : ''}`)].join('\n'),
          }
        }
      }
      throw new UsageError('rules: list, put, delete or backtest')
    }
    case 'weight-hints': {
      if (verb === 'list') {
        const r = await op.listWeightHints({ cluster: rest[0] ?? '' })
        return { raw: r, text: r.hints.map((h) => `${h.cluster}\t${h.endpoint}\t${h.weight}`).join('\n') || '(no weight hints)' }
      }
      if (verb === 'set') {
        const cluster = arg(0, 'CLUSTER')
        const hints = rest.slice(1).map((pair) => {
          const eq = pair.lastIndexOf('=')
          const weight = Number(pair.slice(eq + 1))
          if (eq <= 0 || !Number.isFinite(weight)) throw new UsageError(`"${pair}": URL=WEIGHT`)
          return { endpoint: pair.slice(0, eq), weight }
        })
        if (hints.length === 0) throw new UsageError('weight-hints set: at least one URL=WEIGHT')
        const r = await op.setWeightHints({ cluster, hints, replace: v.replace === true, dryRun: v['dry-run'] === true, message: v.message ?? '' })
        return { raw: r, text: `${r.changed ? (v['dry-run'] === true ? 'would set' : 'set') : 'unchanged'}: ${r.hints.map((h) => `${h.endpoint}=${h.weight}`).join(', ') || 'none'}` }
      }
      throw new UsageError('weight-hints: list or set')
    }
  }
  throw new UsageError(`unknown command "${noun ?? ''}"`)
}

/**
 * `apply --dry-run`: the items depend on each other (a route on a cluster
 * of the same file), so they are merged into the current document here and
 * the result validated as a whole, not item by item.
 */
async function dryApply (op: OperatorClient, d: Record<string, unknown[] | undefined>): Promise<Output> {
  const current = await op.getConfig({})
  const doc = (current.configJson === '' ? {} : JSON.parse(current.configJson)) as Record<string, unknown>
  for (const key of ['clusters', 'routes'] as const) {
    const list = Array.isArray(doc[key]) ? [...doc[key] as unknown[]] : []
    for (const item of d[key] ?? []) {
      const at = list.findIndex((x) => name(x) === name(item))
      if (at === -1) list.push(item)
      else list[at] = item
    }
    doc[key] = list
  }
  const r = await op.validateConfig({ configJson: JSON.stringify(doc) })
  if (!r.valid) throw Object.assign(new Error('invalid'), { code: 3, details: 'the merged document would be invalid', issues: r.issues })
  return { raw: r, text: `dry run: valid on v${current.version} with ${(d.clusters ?? []).length} cluster(s) and ${(d.routes ?? []).length} route(s) applied (overlays and rules are checked when put)` }
}

/** Objects from a YAML or JSON file: a list, or one object. */
async function readItems (file: string): Promise<unknown[]> {
  const doc: unknown = parseYaml(await readFile(file, 'utf8'))
  return Array.isArray(doc) ? doc : [doc]
}

function changeText (r: pb.ChangeResponse): string {
  if (!r.changed) return `unchanged (v${r.version})`
  return `${r.dryRun ? 'dry run: would be' : 'now'} v${r.version}: ${r.summary}`
}

function summarise (kind: string, x: Record<string, unknown>): string {
  if (kind === 'route') return `→ ${String(x.cluster)} ${JSON.stringify(x.match ?? {})}`
  if (kind === 'cluster') return (Array.isArray(x.endpoints) ? x.endpoints as Array<{ url?: string }> : []).map((e) => e.url).join(' ')
  return `${JSON.stringify(x.selector ?? {})} priority ${String(x.priority ?? 0)}`
}

const name = (x: unknown): string => String((x as { name?: unknown } | null)?.name ?? '?')
const fixed = (x: number): string => (Math.round(x * 100) / 100).toString()

function int (text: string, what: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${what}: a whole number (got "${text}")`)
  return n
}

const limit = (v: Values): number => v.limit === undefined ? 0 : int(v.limit, '--limit')

const STATUS_NAMES: Record<number, string> = { 3: 'INVALID_ARGUMENT', 5: 'NOT_FOUND', 7: 'PERMISSION_DENIED', 9: 'FAILED_PRECONDITION', 14: 'UNAVAILABLE', 16: 'UNAUTHENTICATED', 13: 'INTERNAL', 4: 'DEADLINE_EXCEEDED' }
const statusName = (code: number): string => STATUS_NAMES[code] ?? `code ${code}`
