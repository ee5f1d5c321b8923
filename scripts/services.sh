#!/usr/bin/env bash
# Starts (or stops) the services the integration tests use, when they are not already up.
#   scripts/services.sh start|stop|check
# `start` exits 1, naming each one, when a service the tests will use does not answer afterwards;
# `check` only looks. The endpoints are the ones the tests read (tests/integration/service_stack.py):
#   ASSEMBLAGE_TEST_PG     default postgresql+psycopg://postgres@127.0.0.1:5432/postgres
#   ASSEMBLAGE_TEST_REDIS  default redis://127.0.0.1:6379 (a local Redis is started on that port)
#   ASSEMBLAGE_TEST_S3     default http://127.0.0.1:8080 (Swift, started by scripts/services-extra.sh)
set -uo pipefail
cd "$(dirname "$0")/.."

PG_URL=${ASSEMBLAGE_TEST_PG:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${ASSEMBLAGE_TEST_REDIS:-redis://127.0.0.1:6379}
S3_URL=${ASSEMBLAGE_TEST_S3:-http://127.0.0.1:8080}

# host and port of a URL: scheme://[user@]host[:port][/...]; $2 is the default port
host_port() {
  local rest=${1#*://}
  rest=${rest%%/*}
  rest=${rest##*@}
  local host=${rest%%:*} port=$2
  [[ $rest == *:* ]] && port=${rest##*:}
  echo "${host:-127.0.0.1} $port"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
is_local() { [ "$1" = 127.0.0.1 ] || [ "$1" = localhost ]; }

read -r PG_HOST PG_PORT < <(host_port "$PG_URL" 5432)
read -r REDIS_HOST REDIS_PORT < <(host_port "$REDIS_URL" 6379)
read -r S3_HOST S3_PORT < <(host_port "$S3_URL" 80)

start_postgres() {
  if port_open "$PG_HOST" "$PG_PORT"; then echo "services: postgresql already up"; return; fi
  if is_local "$PG_HOST" && [ "$PG_PORT" = 5432 ] && command -v pg_ctlcluster >/dev/null; then
    local v
    v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
    [ -n "$v" ] && pg_ctlcluster --skip-systemctl-redirect "$v" main start
    for _ in $(seq 30); do port_open "$PG_HOST" "$PG_PORT" && break; sleep 0.5; done
  fi
  port_open "$PG_HOST" "$PG_PORT" && echo "services: postgresql started"
}

start_redis() {
  if port_open "$REDIS_HOST" "$REDIS_PORT"; then echo "services: redis already up"; return; fi
  if is_local "$REDIS_HOST" && command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null
    for _ in $(seq 20); do port_open "$REDIS_HOST" "$REDIS_PORT" && break; sleep 0.25; done
  fi
  port_open "$REDIS_HOST" "$REDIS_PORT" && echo "services: redis started on port $REDIS_PORT"
}

# every endpoint the tests use must answer; prints one line per one that does not, returns 1 if any
check() {
  local down=0
  port_open "$PG_HOST" "$PG_PORT" || { echo "services: PostgreSQL NOT available at $PG_HOST:$PG_PORT (ASSEMBLAGE_TEST_PG)" >&2; down=1; }
  port_open "$REDIS_HOST" "$REDIS_PORT" || { echo "services: Redis NOT available at $REDIS_HOST:$REDIS_PORT (ASSEMBLAGE_TEST_REDIS)" >&2; down=1; }
  port_open "$S3_HOST" "$S3_PORT" || { echo "services: S3 NOT available at $S3_URL (ASSEMBLAGE_TEST_S3)" >&2; down=1; }
  return $down
}

case "${1:-start}" in
  start)
    start_postgres
    start_redis
    rc=0
    scripts/services-extra.sh start || rc=1
    check || rc=1
    exit $rc ;;
  stop)
    scripts/services-extra.sh stop
    exit 0 ;;
  check)
    check && echo "services: PostgreSQL, Redis and S3 answer" ;;
  *) echo "usage: $0 start|stop|check" >&2; exit 2 ;;
esac
