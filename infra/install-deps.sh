#!/usr/bin/env bash
# Install what the served stack needs beyond the Python venv, idempotently and non-interactively:
#   * Debian's `postgresql` (server binaries: initdb, postgres)  -- apt, only when missing
#   * s3rver (file-backed S3 API) into infra/node_modules        -- npm ci from the committed lock
# Skips each step when already satisfied, so a second run takes well under a second.
set -euo pipefail
cd "$(dirname "$0")"

apt_install() {  # apt_install WHAT PKG...: as root, non-interactive, only what is asked
  if [ "$(id -u)" -ne 0 ]; then
    echo "infra-deps: $1 missing; run as root (or: sudo apt-get install -y ${*:2})" >&2
    exit 1
  fi
  echo "infra-deps: installing Debian package(s) ${*:2}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${@:2}" >/dev/null
}

have_pg() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if have_pg; then
  echo "infra-deps: PostgreSQL server binaries present"
else
  apt_install PostgreSQL postgresql
  # The package starts a machine-wide `main` cluster on 5432; the stack runs its own cluster
  # under REPROLAB_STACK_DIR, so stop that one again (leaves nothing extra running).
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    for conf in /etc/postgresql/*/main; do
      [ -d "$conf" ] || continue
      ver=$(basename "$(dirname "$conf")")
      pg_ctlcluster "$ver" main stop >/dev/null 2>&1 || true
    done
  fi
  have_pg || { echo "infra-deps: postgresql installed but initdb not found" >&2; exit 1; }
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install node/npm nodejs npm
fi

# npm ci is skipped while the installed tree matches the lock (npm records it in .package-lock.json).
if [ -f node_modules/s3rver/bin/s3rver.js ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "infra-deps: s3rver present ($(node -p 'require("./node_modules/s3rver/package.json").version'))"
else
  echo "infra-deps: npm ci (s3rver from infra/package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "infra-deps: ok"
