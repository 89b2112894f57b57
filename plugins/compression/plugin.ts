import type { IncomingHttpHeaders } from 'node:http'
import { definePlugin, type HeaderMap } from '../../src/plugin.ts'
import { negotiate } from '../../src/http/accept-encoding.ts'
import { schema, type CompressionConfig } from './schema.ts'
import { MediaTypes, type MediaKind } from './media-types.ts'
import { Encoders, declareMetrics } from './encoders.ts'
import { contentLength, isEncoded, namesWeakForm, noTransform, varyOnAcceptEncoding, weakenEtag } from './headers.ts'

/**
 * Compresses responses with Brotli, zstd or gzip (node:zlib), as the client's
 * Accept-Encoding allows (RFC 9110 §12.5.3, q-values and `*` included),
 * streaming with backpressure. Upstream and local responses alike.
 *
 * Left alone: bodies already coded, 1xx/204/304, 206 and anything with
 * Content-Range, `Cache-Control: no-transform`, types off the allow-list and
 * bodies whose Content-Length is below `minSize`. A body of unknown length
 * (chunked) is compressed: the response head goes out before the first body
 * byte, so waiting for `minSize` bytes would delay every streamed response,
 * and streamed bodies are rarely small (nginx's gzip_min_length also only
 * reads Content-Length).
 *
 * A compressed response loses Content-Length (it streams chunked) and
 * Accept-Ranges, gets `Vary: Accept-Encoding` and a weak ETag (`W/"x"`).
 * A response that would have been compressed but is not, because the
 * client accepts none of the codings, still gets the Vary, so a cache keys it
 * correctly. A HEAD response gets exactly the headers its GET would
 * (RFC 9110 §9.3.2), and so does a 304 revalidating a compressed variant
 * (its ETag weakened when If-None-Match named the weak form).
 *
 * text/event-stream is skipped unless `eventStreams: flush`, which flushes
 * the compressor after every chunk so each event is delivered as written.
 * Any other body without Content-Length is flushed once the chunks that
 * arrived together are coded.
 *
 * Route order matters, since onResponse hooks run in reverse and each adds
 * its transform after the ones before it: put `compression` after `cache`
 * (the cache then captures and stores the compressed variant once, for every
 * client that accepts it) and before any plugin that rewrites the body (which
 * then rewrites the uncompressed bytes).
 *
 * @example
 * // routes[0].plugins:
 * // - name: compression
 * //   config:
 * //     algorithms: [br, gzip]
 * //     levels: { br: 5 }
 * //     minSize: 2kib
 * //     contentTypes: [text/*, application/json, '*\/*+json']
 */
export default definePlugin({
  name: 'compression',
  schema,
  create (config: CompressionConfig, pctx) {
    const types = new MediaTypes(config.contentTypes)
    const metrics = declareMetrics(pctx.metrics, pctx.routeName)
    const encoders = new Encoders(config.levels, metrics)
    const offered = config.algorithms
    const minSize = config.minSize
    const flushEvents = config.eventStreams === 'flush'

    /**
     * RFC 9110 §15.4.5: a 304 carries the Vary and ETag its 200 would. It
     * rarely has a Content-Type; then only If-None-Match naming the weak form
     * of its ETag tells that the asker holds a coded variant. The asker may be
     * the cache revalidating on its own: its validator is in the request that
     * went upstream, not in the client's.
     */
    function revalidated (req: IncomingHttpHeaders, sent: HeaderMap, h: HeaderMap, kind: MediaKind): void {
      if (kind === 'skip' && h['content-type'] !== undefined) return
      const coding = negotiate(req['accept-encoding'], offered)
      const coded = coding !== undefined && coding !== 'identity' && namesWeakForm(sent['if-none-match'], h.etag)
      if (coded) weakenEtag(h)
      if (coded || kind !== 'skip') varyOnAcceptEncoding(h)
    }

    return {
      onResponse (ctx, res) {
        const status = res.status
        // No content (1xx, 204) or a part of one (206): nothing to code.
        if (status < 200 || status === 204 || status === 206) return
        const h = res.headers
        if (h['content-range'] !== undefined || isEncoded(h['content-encoding']) || noTransform(h['cache-control'])) return
        const kind = types.kind(h['content-type'])
        if (status === 304) { revalidated(ctx.req.headers, ctx.upstreamHeaders, h, kind); return }
        if (kind === 'skip' || (kind === 'event-stream' && !flushEvents)) return
        const size = contentLength(h)
        if (size === 0 || (size > 0 && size < minSize)) return

        const coding = negotiate(ctx.req.headers['accept-encoding'], offered)
        varyOnAcceptEncoding(h)
        // A client's `no-transform` asks intermediaries to leave the content alone (RFC 9111 §5.2.1.6).
        if (coding === undefined || coding === 'identity' || noTransform(ctx.req.headers['cache-control'])) { metrics.responses.identity.inc(); return }
        metrics.responses[coding].inc()
        h['content-encoding'] = coding
        delete h['content-length']
        // Byte ranges and digests described the uncoded bytes (RFC 9110 §14, RFC 9530).
        delete h['accept-ranges']
        delete h['content-digest']
        delete h['repr-digest']
        delete h['content-md5']
        weakenEtag(h)
        if (ctx.method === 'HEAD') return
        // A body of unknown length may be a stream the client reads as it
        // comes (a streamed JSON or text answer, a long poll): flushed once
        // what the upstream sent together is coded, so coding never holds it
        // back. Events are flushed one by one; a known length is not flushed.
        res.pipeThrough(encoders.create(coding, size, kind === 'text' || kind === 'event-stream', kind === 'event-stream' ? 'chunk' : size < 0 ? 'idle' : 'none'))
      },
    }
  },
})
