#!/usr/bin/env bash
# Installs everything pullback needs on a fresh Debian 12 machine (root): the hypervisor
# stack (QEMU, libvirt, NBD tools; daemons started), the npm packages (native addons
# compiled here with g++), and the compiled CLI in dist/. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-hypervisor.sh

# Native addons must build with the machine's toolchain (see .prebuild-installrc).
if ! command -v g++ >/dev/null || ! command -v make >/dev/null || ! command -v python3 >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ make python3 >/dev/null
fi

stamp=node_modules/.pullback-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing npm packages (compiles better-sqlite3 and zstd-napi, a few minutes)" >&2
  # `npm install` with the committed lock, not `npm ci`: the lock holds only this platform's
  # optional packages (the registry here serves no others) and `npm ci` rejects that.
  npm_config_build_from_source=true npm install --no-save --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
# The native addons must load; if npm skipped their build scripts, build them now.
if ! node -e 'require("better-sqlite3"); require("zstd-napi"); require("@napi-rs/blake-hash")' 2>/dev/null; then
  echo "setup: building native addons" >&2
  npm_config_build_from_source=true npm rebuild better-sqlite3 zstd-napi --loglevel=error
  node -e 'require("better-sqlite3"); require("zstd-napi"); require("@napi-rs/blake-hash")'
fi

npx tsc -p tsconfig.build.json
echo "setup: ready ($(./bin/pullback --version))" >&2
