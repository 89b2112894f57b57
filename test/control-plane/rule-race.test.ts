import t from 'tap'
import { StaleStateError, type StateStore, type StoreState } from '../../control-plane/store.ts'
import { contentHash, type ConfigDocument } from '../../control-plane/validate.ts'
import type { RunningControlPlane } from '../../control-plane/server.ts'
import { startTestControlPlane, tempDir } from './helpers.ts'

const API = { name: 'api', endpoints: [{ url: 'http://127.0.0.1:9' }, { url: 'http://127.0.0.1:10' }] }
const BILLING = { name: 'billing', endpoints: [{ url: 'http://127.0.0.1:11' }] }

async function setUp (cp: RunningControlPlane): Promise<void> {
  await cp.desired.change('ada', { action: 'put_config', document: { listen: { host: '127.0.0.1', port: 0 }, clusters: [API], routes: [{ name: 'api', match: { pathPrefix: '/' }, cluster: 'api' }] } })
  // No traffic: requests >= 0 holds at once.
  await cp.rules.put('ada', { name: 'weights', route: 'api', when: 'requests >= 0', then: [{ type: 'set-weights', cluster: 'api', weights: { 'http://127.0.0.1:9': 5 } }] })
}

const clusterNames = (cp: RunningControlPlane): unknown[] => cp.desired.clusters().map((c) => c.name)
const weightOf9 = (cp: RunningControlPlane): unknown => (cp.desired.clusters()[0]?.endpoints as Array<{ weight?: number }>)[0]?.weight

t.test('a rule firing while an operator\'s change is being saved keeps that change', async (t) => {
  const cp = await startTestControlPlane(t, { store: `${await tempDir(t)}/store.json`, ruleIntervalMs: 0 })
  await setUp(cp)
  // The operator's change is queued first and saved while the rule is evaluated on the version before it.
  const [put, firings] = await Promise.all([cp.desired.change('olga', { action: 'put_cluster', cluster: BILLING }), cp.rules.tick()])
  t.match(firings, [{ rule: 'weights', outcome: 'applied', version: put.version + 1 }])
  t.same(clusterNames(cp), ['api', 'billing'], 'the operator\'s cluster is still there')
  t.equal(weightOf9(cp), 5, 'and the rule\'s weight too')
  t.match(cp.desired.history(1)[0], { author: 'rule:weights', summary: 'clusters: changed api' })
})

/** A shared store in memory; `race` is another replica's save that lands just before our next one (once). */
class RacedStore implements StateStore {
  #state: StoreState | undefined
  race: ((state: StoreState) => StoreState) | undefined

  async load (): Promise<StoreState | undefined> {
    return structuredClone(this.#state)
  }

  async save (state: StoreState): Promise<void> {
    const race = this.race
    if (race !== undefined && this.#state !== undefined) {
      this.race = undefined
      this.#state = race(this.#state)
      throw new StaleStateError('another replica changed the state first')
    }
    this.#state = structuredClone(state)
  }
}

t.test('a rule whose save a shared store refuses as stale runs again on the other replica\'s document', async (t) => {
  const store = new RacedStore()
  const cp = await startTestControlPlane(t, { store, ruleIntervalMs: 0 })
  await setUp(cp)
  store.race = (s) => {
    const current = s.history.at(-1)
    if (current === undefined) return s
    const document: ConfigDocument = { ...current.document, clusters: [...current.document.clusters as unknown[], BILLING] }
    const theirs = { ...current, version: s.nextVersion, document, hash: contentHash(document), author: 'olga', action: 'put_cluster', summary: 'clusters: added billing' }
    return { ...s, history: [...s.history, theirs], nextVersion: s.nextVersion + 1 }
  }
  const firings = await cp.rules.tick()
  t.equal(store.race, undefined, 'the other replica saved first')
  t.match(firings, [{ rule: 'weights', outcome: 'applied' }])
  t.same(clusterNames(cp), ['api', 'billing'], 'the other replica\'s cluster is still there')
  t.equal(weightOf9(cp), 5)
  t.same(cp.desired.history().map((v) => v.author), ['rule:weights', 'olga', 'ada'])
})
