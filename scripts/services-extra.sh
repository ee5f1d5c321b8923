#!/usr/bin/env bash
# A real S3 server for the integration tests: OpenStack Swift (Debian packages) with its s3api
# middleware on 127.0.0.1:8080, one device, tempauth credentials test:tester / testing.
# Installs what is missing, is idempotent, and returns at once when the server already answers.
# `start` exits 1 when the server does not answer afterwards (the reason and the log folder on stderr).
#   scripts/services-extra.sh start|stop|status|configure   (configure: the rings and files only)
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${ASSEMBLAGE_SWIFT_DIR:-${TMPDIR:-/tmp}/assemblage-swift}"
# where the S3 endpoint (the proxy) listens; deploy/local/s3.Dockerfile sets 0.0.0.0:9000
BIND="${ASSEMBLAGE_SWIFT_BIND:-127.0.0.1}"
PORT="${ASSEMBLAGE_SWIFT_PORT:-8080}"
PACKAGES=(swift swift-proxy swift-account swift-container swift-object python3-swift memcached)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
healthy() { curl -fsS -m 2 "http://127.0.0.1:$PORT/healthcheck" >/dev/null 2>&1; }

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  command -v curl >/dev/null || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "services-extra: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
}

configure() {
  mkdir -p "$STATE/rings" "$STATE/srv/d1" "$STATE/log" "$STATE/conf" "$STATE/run"
  local user
  user="$(id -un)"
  for kind in proxy account container object; do
    sed -e "s|@STATE@|$STATE|g" -e "s|@USER@|$user|g" "$HERE/swift/$kind-server.conf.in" >"$STATE/conf/$kind-server.conf"
  done
  sed -i -e "s|^bind_ip = .*|bind_ip = $BIND|" -e "s|^bind_port = .*|bind_port = $PORT|" "$STATE/conf/proxy-server.conf"
  if [ ! -f "$STATE/rings/object.ring.gz" ]; then
    (
      cd "$STATE/rings" || exit 1
      swift-ring-builder account.builder create 10 1 1 >/dev/null
      swift-ring-builder account.builder add r1z1-127.0.0.1:6202/d1 100 >/dev/null
      swift-ring-builder account.builder rebalance >/dev/null
      swift-ring-builder container.builder create 10 1 1 >/dev/null
      swift-ring-builder container.builder add r1z1-127.0.0.1:6201/d1 100 >/dev/null
      swift-ring-builder container.builder rebalance >/dev/null
      swift-ring-builder object.builder create 10 1 1 >/dev/null
      swift-ring-builder object.builder add r1z1-127.0.0.1:6200/d1 100 >/dev/null
      swift-ring-builder object.builder rebalance >/dev/null
    )
  fi
}

start_server() {  # kind port
  local kind=$1 port=$2
  port_open "$port" && return 0
  nohup "swift-$kind-server" "$STATE/conf/$kind-server.conf" >>"$STATE/log/$kind.log" 2>&1 &
  echo $! >"$STATE/run/$kind.pid"
}

start() {
  if healthy; then echo "services: s3 (swift) already up"; return 0; fi
  install_missing
  if ! command -v swift-proxy-server >/dev/null; then echo "services: s3 (swift) NOT available (install failed)" >&2; return 1; fi
  configure
  if ! port_open 11211; then
    memcached -d -u "$(id -un)" -l 127.0.0.1 -p 11211 -m 64 -P "$STATE/run/memcached.pid"
  fi
  start_server account 6202
  start_server container 6201
  start_server object 6200
  start_server proxy "$PORT"
  for _ in $(seq 60); do healthy && break; sleep 0.25; done
  if healthy; then echo "services: s3 (swift) started on $BIND:$PORT"; else
    echo "services: s3 (swift) NOT available: no answer on http://127.0.0.1:$PORT/healthcheck; see $STATE/log" >&2
    return 1
  fi
}

stop() {
  for kind in proxy object container account memcached; do
    local pidfile="$STATE/run/$kind.pid"
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  echo "services: s3 (swift) stopped"
}

case "${1:-start}" in
  start) start || exit 1 ;;
  configure) configure ;;
  stop) stop ;;
  status) healthy && echo "s3 (swift) up" || { echo "s3 (swift) down"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status|configure" >&2; exit 2 ;;
esac
