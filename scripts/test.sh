#!/usr/bin/env bash
# Everything `npm test` checks, in order; stops at the first failing step and exits with its code.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
# Redocly CLI sends usage telemetry and checks for updates unless told not to.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

step() { printf '\n==> %s\n' "$*"; }

step "provision: scripts/provision.sh"
bash scripts/provision.sh

step "lint: biome check ."
biome check .

step "typecheck: tsc --noEmit -p tsconfig.json"
tsc --noEmit -p tsconfig.json

step "openapi:lint: redocly lint openapi/openapi.json"
redocly lint openapi/openapi.json --format=stylish

step "bun test"
bun test --timeout 30000 "$@"
