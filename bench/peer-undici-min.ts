/**
 * `../shared/peer-bench`'s `undici-min-dispatch` peer (undici 7, the legacy
 * onConnect/onHeaders/onData handler API), run under the bench child protocol
 * so `bench/instructions.ts --only b,c,p` counts it beside ours: that is the
 * ceiling the peer-bench compares Outrider with, where our own `undici-min`
 * runs on the project's undici 8.
 *
 *   node bench/peer-undici-min.ts --upstream http://127.0.0.1:9001
 *
 * Needs the peer-bench's peers installed (its run.sh does that once, into
 * ~/.cache/peer-bench-peers, or PEERS_DIR).
 */
import { existsSync } from 'node:fs'
import net from 'node:net'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { announceReady, exitWithParent } from './child.ts'

const { values } = parseArgs({ options: { upstream: { type: 'string' } } })
if (values.upstream === undefined) throw new Error('--upstream URL is required')
const peer = fileURLToPath(new URL('../../shared/peer-bench/peers/undici-min.mjs', import.meta.url))
const peersDir = process.env.PEERS_DIR ?? join(homedir(), '.cache', 'peer-bench-peers')
if (!existsSync(peer)) throw new Error(`${peer} not found: ../shared/peer-bench must sit beside the repo`)
if (!existsSync(join(peersDir, 'node_modules', 'undici'))) throw new Error(`no undici in ${peersDir}: run ../shared/peer-bench/run.sh once to install the peers`)

// The peer listens on PORT (no port 0 there): take a free one first.
const port = await new Promise<number>((resolve, reject) => {
  const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
    const p = (s.address() as net.AddressInfo).port
    s.close(() => { resolve(p) })
  })
})
Object.assign(process.env, { PORT: String(port), UPSTREAM: values.upstream, MODE: 'dispatch', PEERS_DIR: peersDir })
// Its own "listening" line stands in for our ready line.
console.log = (): void => { announceReady({ ready: 'peer-undici-min', port, pids: [process.pid] }) }
exitWithParent()
await import(peer)
