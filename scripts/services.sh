#!/usr/bin/env bash
# Starts (or stops) the services the integration tests use, when they are not already up.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_postgres() {
  if port_open 5432; then echo "services: postgresql already up"; return; fi
  if command -v pg_ctlcluster >/dev/null; then
    local v
    v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
    [ -n "$v" ] && pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  fi
  for _ in $(seq 30); do port_open 5432 && break; sleep 0.5; done
  port_open 5432 && echo "services: postgresql started" || echo "services: postgresql NOT available"
}

start_redis() {
  if port_open 6379; then echo "services: redis already up"; return; fi
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  fi
  for _ in $(seq 20); do port_open 6379 && break; sleep 0.25; done
  port_open 6379 && echo "services: redis started" || echo "services: redis NOT available"
}

case "${1:-start}" in
  start)
    start_postgres
    start_redis
    [ -x scripts/services-extra.sh ] && scripts/services-extra.sh start
    exit 0 ;;
  stop)
    [ -x scripts/services-extra.sh ] && scripts/services-extra.sh stop
    exit 0 ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
