# syntax=docker/dockerfile:1
#
# studio-session-cache: two stages on Node 24 (Debian bookworm, slim).
#   build   - full install (dev dependencies included) and `npm run build` (tsconfig.build.json -> dist/)
#   runtime - production dependencies only, the compiled dist/, a non-root user
#
# The same image runs the migration (`node dist/store/migrate-cli.js`, compose's `migrate` service and Railway's
# pre-deploy command) and the service (`node dist/server.js`, the default CMD).
# No BuildKit cache mounts: Railway's builder wants service-specific mount ids, and the install is small anyway.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---------------------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first, so a source-only change reuses the installed node_modules layer.
COPY package.json package-lock.json ./
# The client package is an npm workspace: npm ci needs its manifest to match the lock file.
COPY packages/client/package.json ./packages/client/
# Install scripts run here (package.json "allowScripts"): the `node` dev dependency fetches its pinned binary from
# the npm registry, and `npm run` puts it first on PATH. Nothing from this stage but dist/ reaches the runtime image.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---------------------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
# The client package is an npm workspace: npm ci needs its manifest to match the lock file.
COPY packages/client/package.json ./packages/client/
# Production dependencies only. None of them has an install script, so --ignore-scripts changes nothing today and
# keeps a future dependency's script (or the dev-only `node` package) from ever running in the runtime image.
# --workspaces=false: the root's dependencies only, not the client workspace's (the service never loads the client).
RUN npm ci --omit=dev --ignore-scripts --workspaces=false --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist
# The migrate step (MIGRATION_DATABASE_URL) grants the service's role from this file: one definition of its privileges.
COPY ops/postgres/runtime-role.sql ./ops/postgres/runtime-role.sql

# The image's own unprivileged user (uid 1000); the app never writes to its directory.
USER node

EXPOSE 3000
# server.ts handles SIGTERM: readiness flips to 503 for SHUTDOWN_DRAIN_DELAY_MS while still serving, then in-flight
# requests finish, pools close, exit 0 within SHUTDOWN_TIMEOUT_MS (default 10 s from the signal). Docker's default
# stop timeout is also 10 s: run with --stop-timeout 15 (compose: stop_grace_period) so SIGKILL never cuts the drain.
STOPSIGNAL SIGTERM

# Liveness only (process up and serving HTTP): a Redis or Postgres outage must not get a healthy instance killed.
# slim has no curl or wget, so Node's own fetch does the probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/live', { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

CMD ["node", "dist/server.js"]
