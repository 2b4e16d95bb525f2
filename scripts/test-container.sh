#!/usr/bin/env bash
# `npm run test:container`: builds the image, brings compose.yaml up and walks the README's "Using Docker
# Compose" steps word for word, then checks what an operator relies on: the HEALTHCHECK, a service that is not
# root, data kept across `docker-compose restart`, and `docker-compose stop` answering a request in flight.
# Starts a Docker engine when none answers (and stops it at the end), tears everything down, and fails, never
# skips, where something cannot run. Ends with the image's size and the run's duration.
set -euo pipefail

cd "$(dirname "$0")/.."
project=$PWD
started=$SECONDS

say() { printf '\n[container] %s\n' "$*"; }
fail() {
  printf '[container] FAILED: %s\n' "$*" >&2
  exit 1
}

bash scripts/provision.sh container

work=$(mktemp -d)
dockerd_pid=""
compose_up=0
cleanup() {
  local status=$?
  set +e
  if [ "$compose_up" = 1 ]; then
    [ "$status" = 0 ] || docker-compose logs --no-color --tail 30 database-service >&2
    docker-compose down -v --remove-orphans >/dev/null 2>&1
  fi
  if [ -n "$dockerd_pid" ]; then
    [ "$status" = 0 ] || tail -n 20 "$work/dockerd.log" >&2
    kill "$dockerd_pid"
    wait "$dockerd_pid"
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
# Interrupted: the same teardown.
trap 'exit 130' INT TERM

# --- the engine -------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  say "no Docker engine answers: starting dockerd"
  # No iptables and no default bridge: nothing of the host's network setup is touched (Compose makes its
  # own network; published ports go through docker-proxy). vfs works on any filesystem, overlay or not.
  dockerd --iptables=false --bridge=none --storage-driver=vfs >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 1
  done
  docker info >/dev/null 2>&1 || fail "dockerd did not start (see its log above)"
fi

# Where no container registry is reachable, local stand-ins of the images Dockerfile and compose.yaml name.
standins=${CONTAINER_STANDINS:-$project/../shared/tools/container-standins.sh}
if [ -f "$standins" ]; then
  say "local stand-ins of the base images ($standins)"
  bash "$standins" "$project"
fi

# --- the stack, as the README runs it -----------------------------------------------------------
export COMPOSE_PROJECT_NAME=database-service-container-test
# The host's own PostgreSQL usually has 5432.
export POSTGRES_PORT=${POSTGRES_PORT:-15432}
for port in 8080 2379 "$POSTGRES_PORT"; do
  ! ss -Hltn "sport = :$port" | grep -q . || fail "host port $port is in use; compose.yaml publishes it"
done
# An engine started as above has no network for build steps but the host's.
cat >"$work/build-network.yaml" <<EOF
services:
  database-service:
    build:
      context: $project
      network: host
EOF
export COMPOSE_FILE="compose.yaml:$work/build-network.yaml"
image="${COMPOSE_PROJECT_NAME}_database-service"

say "docker-compose build"
build_started=$SECONDS
docker-compose build database-service
build_seconds=$((SECONDS - build_started))

# `docker-compose exec` as typed at a terminal (it wants one unless given -T).
typed() { script -qefc "$*" /dev/null >/dev/null; }
# One request: prints the status; the body and headers are in $work/body and $work/headers.
request() { curl -sS -o "$work/body" -D "$work/headers" -w '%{http_code}' "$@"; }
expect_status() { # expect_status CODE CURL_ARGS...
  local want=$1 got
  shift
  got=$(request "$@") || got="no answer"
  [ "$got" = "$want" ] || fail "curl $* answered $got, not $want: $(head -c 300 "$work/body" 2>/dev/null)"
}
eventually() { # eventually SECONDS DESCRIPTION COMMAND...: COMMAND succeeds within SECONDS
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what (not within ${limit}s)"
    sleep 0.5
  done
}
status_is() { [ "$(request "${@:2}")" = "$1" ]; }
pool() {
  docker-compose exec -T postgres psql -U postgres -d testdb -tAc \
    "select count(*) from pg_stat_activity where application_name like 'database-service:%'"
}
pool_at_most() { [ "$(pool)" -le "$1" ]; }
users_locked() {
  [ "$(docker-compose exec -T postgres psql -U postgres -d testdb -tAc \
    "select count(*) from pg_locks where relation = 'users'::regclass and mode = 'AccessExclusiveLock' and granted")" -ge 1 ]
}
reported_healthy() {
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$(docker-compose ps -q database-service)")" = healthy ]
}

say "1. docker-compose up -d"
compose_up=1
docker-compose down -v --remove-orphans >/dev/null 2>&1
docker-compose up -d
eventually 90 "/health answers 200" status_is 200 http://localhost:8080/health

say "2. curl http://localhost:8080/health"
expect_status 200 http://localhost:8080/health
grep -q '"status":"healthy"' "$work/body" || fail "/health is not healthy: $(cat "$work/body")"

say "3. list, create, get"
expect_status 200 http://localhost:8080/users
[ "$(cat "$work/body")" = "[]" ] || fail "a fresh stack lists users: $(cat "$work/body")"
expect_status 201 -X POST http://localhost:8080/users \
  -H "Content-Type: application/json" \
  -d '{"name":"Alice","email":"alice@example.com"}'
expect_status 200 http://localhost:8080/users/1
grep -q '"email":"alice@example.com"' "$work/body" || fail "GET /users/1: $(cat "$work/body")"

# Concurrent requests open more than one connection, so the shrink below is seen.
readers=()
for _ in $(seq 20); do
  curl -s -o /dev/null http://localhost:8080/users &
  readers+=($!)
done
wait "${readers[@]}"
before=$(pool)
[ "$before" -ge 2 ] || fail "20 concurrent requests left $before connection(s) open, expected at least 2"

say "4. docker-compose exec etcdctl etcdctl put /maintenance/database-service true"
typed docker-compose exec etcdctl etcdctl put /maintenance/database-service true
eventually 10 "/users answers 503 in maintenance" status_is 503 http://localhost:8080/users
grep -qi '^retry-after: [0-9]' "$work/headers" || fail "503 without Retry-After: $(cat "$work/headers")"
expect_status 200 http://localhost:8080/health
grep -q '"status":"maintenance"' "$work/body" || fail "/health in maintenance: $(cat "$work/body")"
eventually 15 "the pool shrinks to DB_MAINTENANCE_POOL_MAX (1) from $before" pool_at_most 1
echo "pool: $before connections before maintenance, $(pool) in maintenance"

say "5. docker-compose exec etcdctl etcdctl put /maintenance/database-service false"
typed docker-compose exec etcdctl etcdctl put /maintenance/database-service false
eventually 10 "/users answers 200 after maintenance" status_is 200 http://localhost:8080/users
expect_status 200 http://localhost:8080/health
grep -q '"status":"healthy"' "$work/body" || fail "/health after maintenance: $(cat "$work/body")"

say "HEALTHCHECK reports healthy"
eventually 60 "docker reports the service healthy" reported_healthy

say "the service runs as a user other than root"
uid=$(docker-compose exec -T database-service sh -c 'grep ^Uid: /proc/1/status' | awk '{print $2}')
[ -n "$uid" ] && [ "$uid" != 0 ] || fail "PID 1 of database-service runs as uid '${uid}'"
echo "PID 1 uid: $uid"

say "docker-compose restart database-service keeps the data"
docker-compose restart database-service
eventually 60 "/health answers 200 after the restart" status_is 200 http://localhost:8080/health
expect_status 200 http://localhost:8080/users/1
grep -q '"email":"alice@example.com"' "$work/body" || fail "GET /users/1 after the restart: $(cat "$work/body")"

say "docker-compose stop answers a request in flight, and the service exits 0"
container=$(docker-compose ps -q database-service)
# A lock holds the write for 4 s, long enough for the stop to begin while it waits.
docker-compose exec -T postgres psql -U postgres -d testdb -q \
  -c "begin; lock table users; select pg_sleep(4); commit;" >/dev/null &
locker=$!
eventually 10 "the lock on users is taken" users_locked
request -X POST http://localhost:8080/users -H "Content-Type: application/json" \
  -d '{"name":"Bob","email":"bob@example.com"}' >"$work/in-flight-status" &
in_flight=$!
sleep 1
kill -0 "$in_flight" 2>/dev/null || fail "the request was answered before the stop began"
docker-compose stop
wait "$locker"
wait "$in_flight" || true
[ "$(cat "$work/in-flight-status")" = 201 ] ||
  fail "the request in flight was answered '$(cat "$work/in-flight-status")', not 201"
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$container")
[ "$exit_code" = 0 ] || fail "database-service exited with $exit_code"

size=$(docker image inspect -f '{{.Size}}' "$image")
say "passed: image $image $((size / 1000000)) MB (built in ${build_seconds}s); run took $((SECONDS - started))s"
