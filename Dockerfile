# database-service: the users API on Bun.
#   docker build -t database-service .    (or: docker compose up -d --build)

# --- Stage 1: production dependencies -------------------------------------------------------
# The lockfile of this project is npm's package-lock.json; there is no bun.lock, so
# `bun install --frozen-lockfile` cannot be used, and `bun install --production` without a
# frozen lockfile would resolve versions afresh on every build. `npm ci` installs exactly the
# locked tree or fails, so the image gets the versions the tests ran against.
# --ignore-scripts: no runtime dependency needs an install script (the only ones are
# @scarf/scarf's telemetry ping and protobufjs's version notice). Every runtime dependency is
# plain JavaScript, so a node_modules built here runs unchanged under Bun.
# The patches under patches/ (postgres.js's queue, see patches/README.md) are applied by the
# devDependency patch-package, so the full tree is installed, patched, then pruned to production.
FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --ignore-scripts --no-audit --no-fund \
  && npx patch-package --error-on-fail \
  && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
  && npm cache clean --force
# Only what runs ships. TypeScript is an optional peer of valibot (for its types), which
# `npm prune --omit=dev` keeps; the service never loads it. Source maps are never loaded either
# (/docs serves only the Swagger UI files it names).
RUN rm -rf node_modules/typescript \
  && find node_modules -name '*.map' -type f -delete
# npm can exit 0 with an incomplete node_modules ("Exit handler never called!", npm/cli#7666):
# the build fails unless every production dependency loads.
RUN node --input-type=module -e " \
  import { readFileSync } from 'node:fs'; \
  const { dependencies } = JSON.parse(readFileSync('package.json', 'utf8')); \
  for (const name of Object.keys(dependencies)) await import(name); \
  console.log('production dependencies load:', Object.keys(dependencies).join(', '));"

# --- Stage 2: runtime ------------------------------------------------------------------------
# Pinned to Bun's minor version, the one package.json's devDependency `bun` tests with.
FROM oven/bun:1.4-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production
# Owned by root and not writable by the `bun` user the service runs as.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
# `bun` (uid 1000) is created by the oven/bun image.
USER bun
EXPOSE 8080
# The image has no curl: Bun itself probes liveness (never the database or maintenance).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["bun", "-e", "fetch('http://127.0.0.1:8080/health/live', { signal: AbortSignal.timeout(3000) }).then((r) => process.exit(r.ok ? 0 : 1)).catch(() => process.exit(1))"]
# Exec form: bun is PID 1 and receives SIGTERM for the graceful shutdown in src/index.ts.
CMD ["bun", "src/index.ts"]
