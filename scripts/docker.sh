#!/usr/bin/env bash
# The Docker daemon and the Linux worker image, for the tests and for running workers in containers.
#   scripts/docker.sh start   start dockerd when it does not answer (installs docker.io when missing)
#   scripts/docker.sh image   build assemblage-linux:latest (and the base image it needs) once;
#                             later calls reuse Docker's layer cache and take seconds
#   scripts/docker.sh base    only the base image assemblage-base:bookworm
#   scripts/docker.sh compose-images
#                             PostgreSQL, Redis and S3 (Swift) images of docker-compose.local.yml,
#                             from the same base (no registry needed), cached the same way
# Several commands may follow one another: scripts/docker.sh image compose-images
# No registry is needed: the base image is a debootstrap of Debian 12 imported as
# assemblage-base:bookworm (see workers/linux/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=assemblage-base:bookworm
IMAGE=${ASSEMBLAGE_IMAGE:-assemblage-linux:latest}
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo

daemon_up() { docker info >/dev/null 2>&1; }

start() {
  if daemon_up; then echo "docker: daemon already up"; return 0; fi
  if ! command -v dockerd >/dev/null; then
    echo "docker: installing docker.io"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends docker.io >/dev/null
  fi
  mkdir -p /var/log
  $SUDO sh -c 'nohup dockerd --host unix:///var/run/docker.sock --data-root /var/lib/docker >/var/log/assemblage-dockerd.log 2>&1 &'
  for _ in $(seq 60); do daemon_up && break; sleep 0.5; done
  if daemon_up; then echo "docker: daemon started"; else
    echo "docker: daemon NOT available (see /var/log/assemblage-dockerd.log)"; return 1; fi
}

mirror() {
  # the Debian mirror this machine uses (deb822 or one-line sources)
  local m
  m=$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)
  [ -z "$m" ] && m=$(grep -hs -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -v security | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

base() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return 0; fi
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q debootstrap >/dev/null
  local root
  root=$(mktemp -d /var/tmp/assemblage-rootfs.XXXXXX)
  echo "docker: debootstrap of bookworm into a base image (about 30 s)"
  $SUDO debootstrap --variant=minbase bookworm "$root" "$(mirror)" >/dev/null
  $SUDO tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
  $SUDO rm -rf "$root"
}

image() {
  start
  base
  # trust this machine's local certificate authorities inside the image too
  find workers/linux/ca-certificates -name '*.crt' -delete
  for c in /usr/local/share/ca-certificates/*.crt; do [ -f "$c" ] && cp "$c" workers/linux/ca-certificates/; done
  echo "docker: building $IMAGE"
  DOCKER_BUILDKIT=0 docker build -q -f workers/linux/Dockerfile --build-arg BASE="$BASE_IMAGE" -t "$IMAGE" . >/dev/null
  # the image this replaced is left untagged: drop such leftovers so rebuilds do not fill the disk
  docker image prune -f >/dev/null || true
  echo "docker: $IMAGE ready"
}

compose_images() {
  start
  base
  local svc
  for svc in postgres redis s3; do
    echo "docker: building assemblage-local/$svc"
    DOCKER_BUILDKIT=0 docker build -q -f "deploy/local/$svc.Dockerfile" --build-arg BASE="$BASE_IMAGE" \
      -t "assemblage-local/$(local_tag "$svc")" . >/dev/null
  done
  echo "docker: compose service images ready"
}

local_tag() {  # the tags docker-compose.local.yml names
  case "$1" in
    postgres) echo postgres:15 ;;
    redis) echo redis:7 ;;
    s3) echo s3:swift ;;
  esac
}

[ $# -eq 0 ] && set -- start
for cmd in "$@"; do
  case "$cmd" in
    start) start ;;
    base) start; base ;;
    image) image ;;
    compose-images) compose_images ;;
    *) echo "usage: $0 start|base|image|compose-images ..." >&2; exit 2 ;;
  esac
done
