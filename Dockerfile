# Outrider data plane (and `outrider-cp`). Node 24 runs the TypeScript sources
# directly (type stripping): there is no build step. The image carries them
# already stripped in Node's compile cache, so the proxy never loads the
# stripper (src/outrider.js says why that matters).
# The steps mirror .ci/run's "production install" check, which proves them on
# every CI run (Docker itself cannot run on the build machines).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only: the node@24 devDependency is for machines whose
# own node is older; the image already has Node 24. No scripts: `prepare` fills
# the compile cache, which needs the sources (done below).
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts

FROM node:24-bookworm-slim
ENV NODE_ENV=production OUTRIDER_CONFIG=/etc/outrider/outrider.yaml NODE_COMPILE_CACHE=/app/.compile-cache
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY plugins ./plugins
COPY control-plane ./control-plane
COPY config/outrider.yaml /etc/outrider/outrider.yaml
# /var/lib/outrider: the one directory uid 1337 may write, for a managed data
# plane's last-known-good config (`--cache-dir /var/lib/outrider`; mount a
# volume there so the cache outlives the container).
RUN install -d -o 1337 -g 1337 /app/.compile-cache /var/lib/outrider
# A fixed, non-root uid: transparent interception excludes the proxy's own
# traffic by this uid (`outrider iptables --proxy-uid 1337`), so nothing loops.
USER 1337:1337
# Filled as that uid: Node keeps a compile cache per user, and one it cannot
# write to is not used at all.
RUN node src/warm-compile-cache.js
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s CMD ["node", "-e", "fetch('http://127.0.0.1:9901/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM drains in-flight requests (shutdown.drainTimeout, 30s by default) and
# exits 0. Give the container longer than that before it is killed: Docker's
# default is 10s (`docker run --stop-timeout 35`), Kubernetes' 30s
# (`terminationGracePeriodSeconds: 35`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "src/outrider.js"]
