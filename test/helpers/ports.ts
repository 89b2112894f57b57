import net from 'node:net'

interface Teardown { teardown (fn: () => unknown): void }

/**
 * A port whose service is down: it takes each connection and drops it at
 * once. Held until the test ends, so no server of a test running in
 * parallel can take it (a port merely closed can be: that happened, once,
 * to a client that kept retrying).
 */
export async function droppingPort (t: Teardown): Promise<number> {
  const sink = net.createServer((socket) => { socket.destroy() })
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { sink.close() })
  return (sink.address() as net.AddressInfo).port
}

/**
 * A port nothing listens on: free a moment ago. Only for a single connection
 * tried at once that must be refused (ECONNREFUSED); anything that keeps
 * retrying wants droppingPort.
 */
export async function closedPort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}
