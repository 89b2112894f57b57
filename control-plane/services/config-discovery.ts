import { randomBytes } from 'node:crypto'
import * as grpc from '@grpc/grpc-js'
import type { Logger } from '../../src/log.ts'
import { services } from '../protos.ts'
import type { TokenTable } from '../auth.ts'
import type { DesiredConfig } from '../desired-config.ts'
import { BadRequestError } from '../errors.ts'
import type { Fleet, FleetSession } from '../fleet.ts'
import type { ConfigVersion } from '../store.ts'
import type * as pb from '../generated/types.ts'
import { authorize, toStatus } from './status.ts'
import { flattenHints } from './operator.ts'
import { MAX_DOCUMENT_BYTES } from '../operator-client.ts'

export interface ConfigDiscoveryDeps {
  desired: DesiredConfig
  fleet: Fleet
  tokens: TokenTable | undefined
  log: Logger
  /** A node's document larger than this (JSON bytes) is withheld, not sent to be refused by the node's gRPC (default MAX_DOCUMENT_BYTES). */
  maxDocumentBytes?: number
}

type StreamCall = grpc.ServerDuplexStream<pb.DiscoveryRequest, pb.DiscoveryResponse>

/** Nonces remembered per stream: enough to name the version of a late NACK. */
const NONCES_KEPT = 8

/**
 * `outrider.v1.ConfigDiscovery`: the xDS-style config stream. Each data
 * plane gets the base document with the overlays its labels select
 * (overlays.ts); a new version is pushed only to the nodes whose document it
 * changes, as xDS pushes only changed resources. Returns a handle that ends
 * every open stream, for shutdown: gRPC's graceful shutdown would otherwise
 * wait for streams that never end by themselves.
 */
export function register (server: grpc.Server, deps: ConfigDiscoveryDeps): { endAll (): void } {
  const open = new Set<StreamCall>()
  server.addService(services().ConfigDiscovery.service, {
    Stream: (call: StreamCall) => { serve(call, deps, open) },
  })
  return {
    endAll () {
      for (const call of open) fail(call, { code: grpc.status.UNAVAILABLE, details: 'control plane shutting down' })
      open.clear()
    },
  }
}

function serve (call: StreamCall, deps: ConfigDiscoveryDeps, open: Set<StreamCall>): void {
  const { desired, fleet, log } = deps
  const maxDocumentBytes = deps.maxDocumentBytes ?? MAX_DOCUMENT_BYTES
  try {
    authorize(call.metadata, deps.tokens, 'data-plane')
  } catch (err) {
    fail(call, toStatus(err, log))
    return
  }
  open.add(call)
  let session: FleetSession | undefined
  let unsubscribe: (() => void) | undefined
  let latestNonce = ''
  const sent = new Map<string, { version: string, hash: string }>()
  let labels: Record<string, string> = {}
  /** The composed document and hints last pushed on this stream: a version that leaves them as they are concerns another node. */
  let lastKey = ''
  let unsubscribeHints: (() => void) | undefined
  let nodeLog = log

  const push = (v: ConfigVersion): void => {
    if (session === undefined) return
    const doc = desired.documentFor(labels, v)
    if (doc === undefined) return
    const weightHints = flattenHints(desired.weightHints())
    const key = `${doc.hash}\0${JSON.stringify(weightHints)}`
    if (key === lastKey) return
    lastKey = key
    if (doc.issues !== undefined) {
      // Never sent to be refused there: the node keeps what it runs, and the
      // fleet view says why it is behind.
      fleet.nack(session, String(v.version), { message: 'withheld by the control plane: the document this node\'s overlays make does not validate', issues: doc.issues })
      nodeLog.warn('config withheld: the document this node\'s overlays make does not validate', { version: v.version, overlays: doc.overlays, issues: doc.issues })
      return
    }
    const configJson = JSON.stringify(doc.document)
    const bytes = Buffer.byteLength(configJson)
    if (bytes > maxDocumentBytes) {
      // The node's gRPC would drop the stream (RESOURCE_EXHAUSTED) and resubscribe forever.
      const message = `withheld by the control plane: the document for this node is ${size(bytes)}, more than the ${size(maxDocumentBytes)} a data plane accepts`
      fleet.nack(session, String(v.version), { message, issues: [] })
      nodeLog.warn('config withheld: the document is too large to push', { version: v.version, bytes, maxBytes: maxDocumentBytes })
      return
    }
    const nonce = randomBytes(12).toString('base64url')
    latestNonce = nonce
    sent.set(nonce, { version: String(v.version), hash: doc.hash })
    if (sent.size > NONCES_KEPT) sent.delete(sent.keys().next().value as string)
    call.write({ versionInfo: String(v.version), nonce, configJson, contentHash: doc.hash, weightHints } satisfies pb.DiscoveryResponse)
    fleet.sent(session, String(v.version), doc.overlays)
    nodeLog.debug('config pushed', { version: v.version, overlays: doc.overlays })
  }

  const cleanup = (): void => {
    unsubscribe?.()
    unsubscribe = undefined
    unsubscribeHints?.()
    unsubscribeHints = undefined
    open.delete(call)
    if (session !== undefined) { fleet.disconnect(session); nodeLog.info('data plane disconnected') }
    session = undefined
  }

  call.on('data', (req: pb.DiscoveryRequest) => {
    if (session === undefined) {
      if (req.nodeId === '') { fail(call, toStatus(new BadRequestError('node_id: the data plane\'s id (the first request names the node)'), log)); cleanup(); return }
      labels = { ...req.labels }
      session = fleet.connect(req.nodeId, req.labels, call.getPeer(), req.versionInfo)
      nodeLog = log.child({ node: req.nodeId })
      nodeLog.info('data plane subscribed', { running: req.versionInfo || null, labels: req.labels, peer: call.getPeer() })
      unsubscribe = desired.subscribe(push)
      unsubscribeHints = desired.onWeightHints(() => { const c = desired.current; if (c !== undefined) push(c) })
      // Always answer the subscription, also when the node already runs the
      // current version: the ACK confirms it, and the node learns it is in sync.
      const current = desired.current
      if (current !== undefined) push(current)
      return
    }
    if (req.responseNonce !== latestNonce) {
      // An answer to a push that a newer push has overtaken (xDS: ignore stale nonces).
      nodeLog.debug('stale ACK/NACK ignored', { nonce: req.responseNonce })
      return
    }
    const pushed = sent.get(req.responseNonce)?.version ?? ''
    if (req.errorDetail != null) {
      fleet.nack(session, pushed, { message: req.errorDetail.message, issues: req.errorDetail.issues.map((i) => ({ path: i.path, expected: i.expected })) })
      nodeLog.warn('data plane refused config (NACK); it keeps its previous config', { version: pushed, running: req.versionInfo || null, error: req.errorDetail.message })
    } else {
      fleet.ack(session, req.versionInfo, sent.get(req.responseNonce)?.hash ?? '')
      nodeLog.info('data plane applied config (ACK)', { version: req.versionInfo })
    }
  })
  call.on('end', () => { cleanup(); call.end() })
  call.on('error', () => { cleanup() })
  call.on('cancelled', () => { cleanup() })
  call.on('close', () => { cleanup() })
}

function size (bytes: number): string {
  return bytes < 1024 * 1024 ? `${bytes} bytes` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}

function fail (call: StreamCall, status: Partial<grpc.StatusObject>): void {
  call.emit('error', status)
}
