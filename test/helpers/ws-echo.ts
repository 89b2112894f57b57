import http from 'node:http'
import https from 'node:https'
import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'

/** RFC 6455 §1.3: the GUID the accept key is derived with. */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

export interface WsEchoServer {
  readonly url: string
  readonly port: number
  /** Heads of the upgrade requests that reached this server. */
  readonly upgrades: Array<{ url: string, headers: http.IncomingHttpHeaders }>
  /** Open WebSocket connections. */
  readonly sockets: Set<Duplex>
  close (): Promise<void>
}

/**
 * A minimal RFC 6455 echo server for tests: accepts any upgrade on any path
 * (§4.2.2), echoes text and binary messages (reassembling fragments), answers
 * ping with pong and close with close. Server frames are unmasked (§5.1);
 * client frames must be masked, or the connection is failed with 1002.
 * Plain (non-upgrade) requests get `426 Upgrade Required`.
 */
export async function startWsEcho (tls?: https.ServerOptions): Promise<WsEchoServer> {
  const upgrades: WsEchoServer['upgrades'] = []
  const sockets = new Set<Duplex>()
  const plain = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { upgrade: 'websocket', connection: 'upgrade' })
    res.end()
  }
  // With `tls`, an https server (wss:// upstream); `url` stays ws:// shaped for the port.
  const server: http.Server = tls === undefined ? http.createServer(plain) : https.createServer(tls, plain)
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers })
    const key = req.headers['sec-websocket-key']
    if (typeof key !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
      return
    }
    const accept = createHash('sha1').update(key + GUID).digest('base64')
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`)
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    serve(socket, head)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    upgrades,
    sockets,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** Encodes one unmasked frame (RFC 6455 §5.2). */
export function frame (opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length
  let header: Buffer
  if (len < 126) {
    header = Buffer.from([(fin ? 0x80 : 0) | opcode, len])
  } else if (len < 65536) {
    header = Buffer.alloc(4)
    header[0] = (fin ? 0x80 : 0) | opcode
    header[1] = 126
    header.writeUInt16BE(len, 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = (fin ? 0x80 : 0) | opcode
    header[1] = 127
    header.writeBigUInt64BE(BigInt(len), 2)
  }
  return Buffer.concat([header, payload])
}

function serve (socket: Duplex, head: Buffer): void {
  let buf = head
  let message: Buffer[] = []
  let messageOpcode = 0
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    for (;;) {
      if (buf.length < 2) return
      const b0 = buf[0] as number
      const b1 = buf[1] as number
      const fin = (b0 & 0x80) !== 0
      const opcode = b0 & 0x0f
      const masked = (b1 & 0x80) !== 0
      let len = b1 & 0x7f
      let p = 2
      if (len === 126) {
        if (buf.length < 4) return
        len = buf.readUInt16BE(2)
        p = 4
      } else if (len === 127) {
        if (buf.length < 10) return
        len = Number(buf.readBigUInt64BE(2))
        p = 10
      }
      if (!masked) { fail(socket, 1002); return }
      if (buf.length < p + 4 + len) return
      const mask = buf.subarray(p, p + 4)
      const payload = Buffer.allocUnsafe(len)
      for (let i = 0; i < len; i++) payload[i] = (buf[p + 4 + i] as number) ^ (mask[i & 3] as number)
      buf = buf.subarray(p + 4 + len)
      switch (opcode) {
        case 0x0: // continuation
        case 0x1: // text
        case 0x2: // binary
          if (opcode !== 0) messageOpcode = opcode
          message.push(payload)
          if (fin) {
            socket.write(frame(messageOpcode, Buffer.concat(message)))
            message = []
          }
          break
        case 0x8: // close: echo the status code back, then end (§5.5.1)
          socket.end(frame(0x8, payload.subarray(0, 2)))
          return
        case 0x9: // ping → pong with the same payload (§5.5.3)
          socket.write(frame(0xa, payload))
          break
        case 0xa: // pong
          break
        default:
          fail(socket, 1002)
          return
      }
    }
  }
  socket.on('data', onData)
  if (head.length > 0) { const h = buf; buf = Buffer.alloc(0); onData(h) }
}

function fail (socket: Duplex, code: number): void {
  const payload = Buffer.alloc(2)
  payload.writeUInt16BE(code)
  socket.end(frame(0x8, payload))
}
