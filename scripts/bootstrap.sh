#!/usr/bin/env bash
# Installs what Assemblage needs on Debian 12, idempotently.
#   scripts/bootstrap.sh apt demo   compilers and build tools for `make demo`
#   scripts/bootstrap.sh apt test   everything the test suite uses (adds mingw, services)
set -euo pipefail

DEMO_PACKAGES=(
  build-essential gcc-12 g++-12 gcc-11 g++-11 clang-14 clang-16 clang-19 lld-19 llvm-19
  make cmake ninja-build meson pkg-config autoconf automake libtool bubblewrap
  binutils file dpkg-dev git xz-utils bzip2 ca-certificates python3-venv python3-dev apt-file
  libsqlite3-dev  # the C reader of assemblage/corpus/export/_batches.c links the system SQLite
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
  gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf libc6-dev-armhf-cross
  gcc-mingw-w64 g++-mingw-w64
)
TEST_PACKAGES=(
  "${DEMO_PACKAGES[@]}"
  redis-server postgresql docker-compose docker.io debootstrap
  shellcheck  # the fleet's user-data scripts
  chromium  # the web pages' tests (headless, over the DevTools protocol)
  universal-ctags  # the source-text tests' oracle
)

missing() {
  local out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[@]:-}"
}

apt_install() {
  local need
  need=$(missing "$@")
  if [ -z "$need" ]; then
    echo "bootstrap: all Debian packages present"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "bootstrap: installing $need"
  export DEBIAN_FRONTEND=noninteractive
  # an old or absent package list makes installs fail: refresh it once per day at most
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    $SUDO apt-get update -q
  fi
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $need || { $SUDO apt-get update -q; $SUDO apt-get install -y -q --no-install-recommends $need; }
}

# Debian's Contents index (which package ships which file), for dependency resolution: apt-file
# keeps it with apt's lists (/var/lib/apt/lists/*Contents*); refreshed once a week at most
contents_index() {
  if [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Contents-*' -mtime -7 2>/dev/null | head -1)" ]; then
    echo "bootstrap: apt-file index present"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "bootstrap: apt-file update (Debian's Contents index, about 50 MB)"
  $SUDO apt-file update -q >/dev/null || $SUDO apt-file update
}

case "${1:-}:${2:-}" in
  apt:demo) apt_install "${DEMO_PACKAGES[@]}"; contents_index ;;
  apt:test) apt_install "${TEST_PACKAGES[@]}"; contents_index ;;
  *) echo "usage: $0 apt demo|test" >&2; exit 2 ;;
esac
