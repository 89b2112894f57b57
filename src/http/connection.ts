import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

const kClosing = Symbol('outrider.closing')
const kLast = Symbol('outrider.lastResponse')
type Marked = { [kClosing]?: true, [kLast]?: ServerResponse }

/**
 * Marks a client connection whose last response says `Connection: close`.
 * node's parser hands over every pipelined request it already read from the
 * same packet, even after such a response was committed; RFC 9112 §9.6 says a
 * server MUST NOT process them. A request is only forwarded if its connection
 * is not marked, so bytes after a rejected request never reach an upstream.
 */
export function markClosing (socket: Duplex): void {
  (socket as Duplex & Marked)[kClosing] = true
}

export function isClosing (socket: Duplex): boolean {
  return (socket as Duplex & Marked)[kClosing] === true
}

/**
 * Remembers the newest response on a connection. When the parser fails on
 * bytes after a pipelined request, the error reply must wait behind every
 * response still owed, and this is the last of them.
 */
export function trackResponse (socket: Duplex, res: ServerResponse): void {
  (socket as Duplex & Marked)[kLast] = res
}

export function lastResponse (socket: Duplex): ServerResponse | undefined {
  return (socket as Duplex & Marked)[kLast]
}

/** Drops the reference once `res` is done, so an idle connection holds no exchange. */
export function forgetResponse (socket: Duplex | null, res: ServerResponse): void {
  if (socket !== null && (socket as Duplex & Marked)[kLast] === res) (socket as Duplex & Marked)[kLast] = undefined
}
