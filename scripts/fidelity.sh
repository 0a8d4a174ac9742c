#!/usr/bin/env bash
# Long fidelity run (docs/fidelity.md): random steps against real libvirt domains, seed after
# seed, for a total duration. Builds dist/ first (the driver runs the built CLI).
#
#   bash scripts/fidelity.sh                 # seeds 1000.., 150 steps each, 45 minutes in all
#   SEEDS=1-40 STEPS=200 TOTAL=60m bash scripts/fidelity.sh
#   LOG=/var/tmp/fid.log bash scripts/fidelity.sh   # also keep the full step log
#
# Goes on after a failing seed (its step log and replay command are printed); exits 1 if any
# seed failed. The last line is the totals (JSON): seeds, steps, restores, disks compared.
# Restarts libvirtd now and then (NO_LIBVIRTD_RESTART=1 to avoid: it interrupts anyone else
# using the daemon for a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "fidelity: must run as root (libvirt domains)" >&2; exit 1; }
bash scripts/setup-hypervisor.sh
npx tsc -p tsconfig.build.json
args=(--seeds "${SEEDS:-1000-1999}" --steps "${STEPS:-150}" --total "${TOTAL:-45m}" --keep-going)
[ -z "${NO_LIBVIRTD_RESTART:-}" ] || args+=(--no-libvirtd-restart)
if [ -n "${LOG:-}" ]; then
  npx tsx test/fidelity/run.ts "${args[@]}" 2>&1 | tee "$LOG" | grep -E '^(\{|fidelity run|replay|files kept)'
  exit "${PIPESTATUS[0]}"
fi
exec npx tsx test/fidelity/run.ts "${args[@]}" --quiet
