#!/usr/bin/env bash
# The programs the tests need beyond Node and npm, in one place (used by scripts/test.sh, tests/setup.ts
# and .ci/run). Nothing missing: silent. As root: installs what is missing with apt-get (Debian, Ubuntu),
# saying so. Otherwise: one line naming what to install, and exit 1, before any test runs.
#
#   provision.sh              what `npm test` needs
#   provision.sh container    and what `npm run test:container` needs
set -euo pipefail

# Bash's `command -v` falls back to a file on the PATH that cannot be executed: check that it can.
have() { [ -x "$(command -v "$1")" ]; }

# What each program is for, and the Debian packages that provide it.
missing=()
have etcd && have etcdctl ||
  missing+=(etcd-server etcd-client) # the maintenance key of the integration tests
[ -x /usr/bin/chromium ] ||
  missing+=(chromium) # tests/integration/browser.test.ts drives Debian's Chromium
[ -f /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] ||
  missing+=(fonts-liberation) # text in Chromium's pages and screenshots
[ -x /usr/sbin/pgbouncer ] || have pgbouncer ||
  missing+=(pgbouncer) # tests/integration/pgbouncer.test.ts runs the service behind it (transaction pooling)
have promtool ||
  missing+=(prometheus) # promtool checks and unit-tests monitoring/alerts.yml (tests/integration/alerts.test.ts)
have docker-compose ||
  missing+=(docker-compose) # tests/integration/container.test.ts validates compose.yaml with it

runner="npm test"
if [ "${1:-}" = container ]; then
  runner="npm run test:container"
  have dockerd && have docker ||
    missing+=(docker.io) # the engine the image is built and compose.yaml brought up with
  have debootstrap ||
    missing+=(debootstrap) # the base of local stand-in images, where no container registry is reachable
fi

[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing programs for the tests: as root, run \`apt-get update && apt-get install -y ${missing[*]}\` (or \`$runner\` as root, which does), then the tests again" >&2
  exit 1
fi

echo "[provision] installing with apt-get: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
