/**
 * Hop-by-hop fields (RFC 9110 §7.6.1) plus the legacy ones proxies still see.
 * Never forwarded in either direction; `Connection` may name more per message.
 * `TE` and `Upgrade` are handled by the listener (WebSocket is relayed on its own path).
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])
