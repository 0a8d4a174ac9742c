#!/usr/bin/env bash
# `pullback serve` vs qemu-nbd, both read by nbdcopy (see bench/serve.ts). Builds dist/ first
# because the benchmark runs the real CLI (`bin/pullback serve`).
#   bash bench/serve.sh [--work DIR] [--runs N] [--cache 64M]
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.build.json >&2 || echo "bench/serve.sh: tsc reported errors (dist/ was still emitted)" >&2
echo "machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
npx tsx bench/serve.ts "$@"
