#!/usr/bin/env bash
# NBD read benchmark: our client (bench/nbd-read.ts) against `nbdcopy URI null:` on the same
# qemu-nbd export of a 2 GiB raw image holding 1 GiB of random data and a 1 GiB hole.
# Alternating runs of both (RUNS, default 7, after one untimed warm-up each), medians, ratio
# and our peak RSS, as one JSON line; then a --sha256 run checked against sha256sum.
#
#   bash bench/nbd-read.sh [extra nbd-read.ts options, e.g. --connections 4 --inflight 16]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/pullback-nbd-bench.XXXXXX")
cleanup() {
  if [ -f "$WORK/qemu-nbd.pid" ]; then kill "$(cat "$WORK/qemu-nbd.pid")" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

IMG="$WORK/disk.raw"
head -c 1G /dev/urandom > "$IMG"
truncate -s 2G "$IMG"
qemu-nbd -r -t -e 0 -f raw -k "$WORK/nbd.sock" --fork --pid-file "$WORK/qemu-nbd.pid" "$IMG"
URI="nbd+unix:///?socket=$WORK/nbd.sock"

echo "machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
npx tsx bench/nbd-read.ts "$URI" --runs "${RUNS:-7}" --compare "$@"

want=$(sha256sum "$IMG" | cut -d' ' -f1)
got=$(npx tsx bench/nbd-read.ts "$URI" --sha256 --warmup 0 "$@" | sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p')
if [ "$got" = "$want" ]; then echo "sha256 check: OK ($got)" >&2; else echo "sha256 check: MISMATCH ours=$got file=$want" >&2; exit 1; fi
