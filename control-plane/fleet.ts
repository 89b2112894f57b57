import type { ConfigIssue } from '../src/errors.ts'

/** Why a node refused a config. */
export interface NackError {
  message: string
  issues: ConfigIssue[]
}

/** One data plane as the control plane last saw it. */
export interface FleetNodeState {
  nodeId: string
  labels: Record<string, string>
  address: string
  connected: boolean
  /** The version it last ACKed, or said it ran when it subscribed; '' if none. */
  ackedVersion: string
  lastAckAt: string
  /** The latest version it NACKed, cleared when it ACKs a newer one. */
  nackedVersion: string
  nackError: NackError | undefined
  lastNackAt: string
  sentVersion: string
  lastSeenAt: string
  /** sha256 of the document it last ACKed (its labels' composition); '' if unknown. */
  ackedHash: string
  /** The overlays its labels selected in the last push. */
  overlays: string[]
}

/** A stream's hold on a node entry: a newer stream for the same id takes it over. */
export interface FleetSession {
  readonly nodeId: string
  readonly id: number
}

/**
 * The fleet view: which data plane runs which version, when it last ACKed and
 * what it last NACKed and why. In memory only: after a control-plane restart
 * every node shows up again as it reconnects and says what it runs.
 */
export class Fleet {
  #nodes = new Map<string, FleetNodeState>()
  /** The stream that currently owns each node id. */
  #owners = new Map<string, number>()
  #nextSession = 1

  /** A node opened a stream (its first request). */
  connect (nodeId: string, labels: Record<string, string>, address: string, runningVersion: string): FleetSession {
    const now = new Date().toISOString()
    const old = this.#nodes.get(nodeId)
    const node: FleetNodeState = {
      nodeId,
      labels: { ...labels },
      address,
      connected: true,
      ackedVersion: runningVersion !== '' ? runningVersion : (old?.ackedVersion ?? ''),
      lastAckAt: old?.lastAckAt ?? '',
      nackedVersion: old?.nackedVersion ?? '',
      nackError: old?.nackError,
      lastNackAt: old?.lastNackAt ?? '',
      sentVersion: '',
      lastSeenAt: now,
      ackedHash: old?.ackedHash ?? '',
      overlays: old?.overlays ?? [],
    }
    this.#nodes.set(nodeId, node)
    const session = { nodeId, id: this.#nextSession++ }
    this.#owners.set(nodeId, session.id)
    return session
  }

  sent (session: FleetSession, version: string, overlays: readonly string[] = []): void {
    const node = this.#owned(session)
    if (node === undefined) return
    node.sentVersion = version
    node.overlays = [...overlays]
  }

  ack (session: FleetSession, version: string, hash = ''): void {
    const node = this.#owned(session)
    if (node === undefined) return
    const now = new Date().toISOString()
    node.ackedVersion = version
    if (hash !== '') node.ackedHash = hash
    node.lastAckAt = now
    node.lastSeenAt = now
    // A NACK stays visible until the node runs something newer than what it refused.
    if (node.nackedVersion !== '' && Number(version) >= Number(node.nackedVersion)) {
      node.nackedVersion = ''
      node.nackError = undefined
      node.lastNackAt = ''
    }
  }

  nack (session: FleetSession, version: string, error: NackError): void {
    const node = this.#owned(session)
    if (node === undefined) return
    const now = new Date().toISOString()
    node.nackedVersion = version
    node.nackError = error
    node.lastNackAt = now
    node.lastSeenAt = now
  }

  disconnect (session: FleetSession): void {
    const node = this.#owned(session)
    if (node === undefined) return
    node.connected = false
    node.lastSeenAt = new Date().toISOString()
    this.#owners.delete(session.nodeId)
  }

  /** Every node, sorted by id (copies). */
  list (): FleetNodeState[] {
    return [...this.#nodes.values()].sort((a, b) => a.nodeId.localeCompare(b.nodeId)).map((n) => ({ ...n, labels: { ...n.labels }, overlays: [...n.overlays] }))
  }

  /** The labels of every known node (for validating the overlay combinations they select). */
  * labelSets (): Iterable<Readonly<Record<string, string>>> {
    for (const n of this.#nodes.values()) yield n.labels
  }

  get (nodeId: string): FleetNodeState | undefined {
    const n = this.#nodes.get(nodeId)
    return n === undefined ? undefined : { ...n, labels: { ...n.labels } }
  }

  #owned (session: FleetSession): FleetNodeState | undefined {
    return this.#owners.get(session.nodeId) === session.id ? this.#nodes.get(session.nodeId) : undefined
  }
}
