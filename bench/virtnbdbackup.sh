#!/usr/bin/env bash
# pullback against virtnbdbackup / virtnbdrestore (Debian package) on the same content, same
# machine, same run (issues 4 and 5). A measurement, not a test: it exits 0 when a target is
# missed, and non-zero only when a result is wrong (a restore whose sha256 differs from the
# reference, a write that did not land, a tool that failed).
#
# Setup (decisions; see docs/benchmarks.md):
#   - One 4 GiB qcow2 image built offline: [0,1G) random, [1G,2G) log-like text (zstd -3
#     ~4.5x, lz4 ~1.9x, no two 4 KiB blocks equal; bench/vnb-data.ts), [2G,4G) explicit zeroes (`qemu-io write -z`: zero
#     clusters, reported by NBD base:allocation as zero, so both tools skip them).
#   - Three domains on identical copies (virtnbdbackup refuses foreign checkpoints and a
#     full resets its chain): pbvnb-pullback (pullback, default repo: 1 MiB chunks, zstd:1),
#     pbvnb-plain (virtnbdbackup), pbvnb-lz4 (virtnbdbackup -z). Every domain gets the same
#     guest writes (same data, same offsets) through HMP qemu-io, so dirty bitmaps see them.
#   - Chain: full; 256 MiB of scattered writes (64 KiB..4 MiB, 4 KiB-aligned, half random
#     half text) + incremental; incremental with nothing changed; 64 MiB more writes + 16 MiB
#     of zero writes + incremental. Then the domains are shut off and the chain (full + 3
#     incrementals) is restored by both tools; every restore must hash (sha256 of the raw
#     content) to the reference, a raw file that received the same writes.
#   - The domains boot no OS, and such a guest's vCPU spins: 92% of a core each, measured
#     (bench/idle-vcpu.ts), i.e. three of them would take more than this 2-core machine has,
#     from both tools alike, where an idle real guest halts. So the domains run paused
#     (`virsh suspend`: the vCPU stops; QEMU's block layer, the NBD export, HMP qemu-io writes
#     and dirty bitmaps all work as before). GUEST_VCPUS=running keeps them spinning, as the
#     runs before the fourth session did.
#   - Tools run one after another (never concurrently: 2 cores). Wall time, peak RSS and CPU
#     from GNU time (`%e %M %U %S`; RSS of the process tree's largest member). Bytes stored:
#     `du -sb`. pullback is the committed HEAD (or PULLBACK_REF) compiled into the work dir:
#     the shared dist/ is rebuilt by test runs and must not change under the bench.
#   - Output: the tables on stdout and in $RESULTS_DIR/<time>/table.md with every tool's
#     stdout/stderr (default /var/tmp/pullback-vnb-results). KEEP_WORK=1 keeps the images,
#     repository and restores. About 4-7 minutes; ~25 GB in /var/tmp.
#
#   bash bench/virtnbdbackup.sh
#   RANDOM_MIB=64 TEXT_MIB=64 ZERO_MIB=128 CHANGE_MIB=16 CHANGE3_MIB=8 ZERO3_MIB=2 bash bench/virtnbdbackup.sh  # smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RANDOM_MIB=${RANDOM_MIB:-1024}
TEXT_MIB=${TEXT_MIB:-1024}
ZERO_MIB=${ZERO_MIB:-2048}
CHANGE_MIB=${CHANGE_MIB:-256}
CHANGE3_MIB=${CHANGE3_MIB:-64}
ZERO3_MIB=${ZERO3_MIB:-16}
MiB=1048576
DISK_MIB=$((RANDOM_MIB + TEXT_MIB + ZERO_MIB))
DOM_PB=pbvnb-pullback
DOM_PLAIN=pbvnb-plain
DOM_LZ4=pbvnb-lz4
DOMS=("$DOM_PB" "$DOM_PLAIN" "$DOM_LZ4")
GUEST_VCPUS=${GUEST_VCPUS:-paused}
case "$GUEST_VCPUS" in paused|running) ;; *) echo "GUEST_VCPUS must be paused or running" >&2; exit 2;; esac
export LIBVIRT_DEFAULT_URI=qemu:///system

log() { printf '[vnb-bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# One run at a time: domain names are fixed, and a second run would share the 2 cores. The
# lock is held by flock(1) around a second instance of this script; -o keeps it out of our
# children (qemu-nbd and friends could otherwise hold it for a moment after we exit).
LOCK=/var/tmp/pullback-vnb-bench.lock
if [ "${VNB_BENCH_LOCKED:-}" != "$LOCK" ]; then
  rc=0
  VNB_BENCH_LOCKED=$LOCK flock -n -o -E 75 "$LOCK" bash "$0" "$@" || rc=$?
  [ "$rc" != 75 ] || die "another bench/virtnbdbackup.sh is running (lock $LOCK)"
  exit "$rc"
fi

# ---- prerequisites -----------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then die "run as root (installs packages, defines libvirt domains)"; fi
for p in virtnbdbackup time; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    log "installing $p"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
  fi
done
if [ ! -f dist/cli/main.js ] || [ ! -f node_modules/.pullback-lock-sha256 ]; then bash scripts/setup.sh; else bash scripts/setup-hypervisor.sh; fi
TSX="$ROOT/node_modules/.bin/tsx"


remove_domains() {
  for d in "${DOMS[@]}"; do
    virsh -q destroy "$d" >/dev/null 2>&1 || true
    virsh -q undefine "$d" --checkpoints-metadata >/dev/null 2>&1 || true
  done
}
# Leftovers of a killed run (we hold the lock, so they are not in use).
remove_domains
rm -rf /var/tmp/pullback-vnb-bench.??????

WORK=$(mktemp -d /var/tmp/pullback-vnb-bench.XXXXXX)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES="${RESULTS_DIR:-/var/tmp/pullback-vnb-results}/$STAMP"
mkdir -p "$RES"
PULLBACK_INIT_ARGS=${PULLBACK_INIT_ARGS:-}  # e.g. "--chunk-size 256K": a repository other than the default
PULLBACK_PERF=${PULLBACK_PERF:-0}  # 1: run each pullback backup under `perf record -g` (profiling only)
KEEP_WORK=${KEEP_WORK:-0}   # 1: keep images, repository and restores (for a post-mortem)
cleanup() {
  local rc=$?
  remove_domains
  if [ "$KEEP_WORK" = 1 ]; then log "kept $WORK (remove it when done)"; else rm -rf "$WORK"; fi
  [ "$rc" = 0 ] || log "failed (exit $rc); logs in $RES"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); work dir $WORK; results $RES"

# pullback under test: the committed HEAD (or PULLBACK_REF), compiled privately, because the
# shared dist/ is rebuilt by every test run in this tree and may change under a running bench.
PB_REF=${PULLBACK_REF:-HEAD}
PB_COMMIT=$(git rev-parse --short "$PB_REF")
log "building pullback $PB_COMMIT into $WORK/pullback"
mkdir -p "$WORK/pullback"
git archive "$PB_REF" src bin package.json tsconfig.json tsconfig.build.json | tar -x -C "$WORK/pullback"
ln -s "$ROOT/node_modules" "$WORK/pullback/node_modules"
(cd "$WORK/pullback" && ./node_modules/.bin/tsc -p tsconfig.build.json > "$RES/tsc.log" 2>&1) ||
  log "tsc reported errors (see $RES/tsc.log); it still emitted JavaScript, going on"
PULLBACK="$WORK/pullback/bin/pullback"
"$PULLBACK" --version > /dev/null || die "the private pullback build does not run (see $RES/tsc.log)"

# ---- the image ---------------------------------------------------------------------------
REF="$WORK/reference.raw"   # what the guest reads from vda at every moment
log "building the ${DISK_MIB} MiB image: ${RANDOM_MIB} MiB random, ${TEXT_MIB} MiB text, ${ZERO_MIB} MiB zeroes"
# Three generators at once (2 cores): random, and the text in two halves with their own seeds.
half=$((TEXT_MIB / 2))
gen_pids=()
"$TSX" bench/vnb-data.ts random base $((RANDOM_MIB * MiB)) "$WORK/random.bin" & gen_pids+=($!)
"$TSX" bench/vnb-data.ts text base-1 $((half * MiB)) "$WORK/text-1.bin" & gen_pids+=($!)
"$TSX" bench/vnb-data.ts text base-2 $(((TEXT_MIB - half) * MiB)) "$WORK/text-2.bin" & gen_pids+=($!)
for p in "${gen_pids[@]}"; do wait "$p" || die "bench/vnb-data.ts failed"; done
cat "$WORK/random.bin" "$WORK/text-1.bin" "$WORK/text-2.bin" > "$REF"
truncate -s $((DISK_MIB * MiB)) "$REF"
# Compressibility of the text, on its first 64 MiB (the rest is more of the same).
SAMPLE=$((half < 64 ? half * MiB : 64 * MiB))
TEXT_ZSTD=$(head -c "$SAMPLE" "$WORK/text-1.bin" | zstd -3 -T1 -c | wc -c)
TEXT_LZ4=$(head -c "$SAMPLE" "$WORK/text-1.bin" | lz4 -1 -c | wc -c)
rm "$WORK/random.bin" "$WORK/text-1.bin" "$WORK/text-2.bin"
qemu-img convert -f raw -O qcow2 "$REF" "$WORK/base.qcow2"
# qemu-io caps one request just under 2 GiB: zero the tail 1 GiB at a time.
for ((z = RANDOM_MIB + TEXT_MIB; z < DISK_MIB; z += 1024)); do
  n=$((DISK_MIB - z < 1024 ? DISK_MIB - z : 1024))
  out=$(qemu-io -f qcow2 -c "write -z $((z * MiB)) $((n * MiB))" "$WORK/base.qcow2") || die "qemu-io write -z: $out"
done

domain_xml() { # NAME IMAGE
  local type=qemu
  [ -e /dev/kvm ] && type=kvm
  cat <<EOF
<domain type='$type'>
  <name>$1</name>
  <description>bench/virtnbdbackup.sh throwaway domain</description>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='$2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}
for d in "${DOMS[@]}"; do
  cp "$WORK/base.qcow2" "$WORK/$d.qcow2"
  domain_xml "$d" "$WORK/$d.qcow2" > "$WORK/$d.xml"
  virsh -q define "$WORK/$d.xml" >/dev/null
  virsh -q start "$d" >/dev/null
  [ "$GUEST_VCPUS" = running ] || virsh -q suspend "$d" >/dev/null
done
log "domains started, vCPUs $GUEST_VCPUS"
rm "$WORK/base.qcow2"

# ---- guest writes ------------------------------------------------------------------------
# A plan is lines "OFFSET LENGTH random|text|zero FILE" (bench/vnb-data.ts plan).
apply_to_domain() { # DOMAIN PLAN
  local dom=$1 plan=$2 qlog=/var/log/libvirt/qemu/$1.log off len kind file cmd out from want got=0
  from=$(stat -c %s "$qlog")
  while read -r off len kind file; do
    if [ "$kind" = zero ]; then cmd="write -z $off $len"; else cmd="write -s $file $off $len"; fi
    out=$(virsh qemu-monitor-command "$dom" --hmp "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"$cmd\"")
    [ -z "${out//[[:space:]]/}" ] || { log "qemu-io on $dom \"$cmd\": $out"; return 1; }
  done < "$plan"
  # HMP answers "" even when qemu-io fails; its result line goes to QEMU's log (via virtlogd).
  want=$(wc -l < "$plan")
  for _ in $(seq 1 200); do
    got=$(tail -c +$((from + 1)) "$qlog" | grep -x -F -f <(awk '{print "wrote " $2 "/" $2 " bytes at offset " $1}' "$plan") | sort -u | wc -l)
    [ "$got" -eq "$want" ] && return 0
    sleep 0.1
  done
  log "$dom: $got of $want writes confirmed in $qlog"
  tail -c +$((from + 1)) "$qlog" | grep -v '^wrote\|^[0-9.]* [KMG]iB, 1 ops' | tail -5 >&2
  return 1
}
apply_to_reference() { # PLAN
  local off len kind file
  while read -r off len kind file; do
    if [ "$kind" = zero ]; then
      fallocate --punch-hole --offset "$off" --length "$len" "$REF"
    else
      dd if="$file" of="$REF" bs=4M oflag=seek_bytes seek="$off" conv=notrunc status=none
    fi
  done < "$1"
}
apply_changes() { # LABEL DATA_MIB ZERO_MIB
  local plan="$WORK/plan-$1.txt" pids=() d
  "$TSX" bench/vnb-data.ts plan "$1" $((DISK_MIB * MiB)) $(($2 * MiB)) $(($3 * MiB)) "$WORK/writes-$1" > "$plan"
  log "guest writes '$1': $(wc -l < "$plan") writes, $2 MiB data + $3 MiB zeroes, on ${DOMS[*]}"
  for d in "${DOMS[@]}"; do apply_to_domain "$d" "$plan" & pids+=($!); done
  apply_to_reference "$plan"
  for p in "${pids[@]}"; do wait "$p" || die "guest writes '$1' failed (see above)"; done
  rm -rf "$WORK/writes-$1"
}

# ---- measuring ---------------------------------------------------------------------------
declare -A T M C S   # wall seconds, peak RSS KiB, CPU seconds, bytes stored after the step
run_timed() { # KEY CMD...
  local key=$1 e m u s
  shift
  sync
  if ! /usr/bin/time -f '%e %M %U %S' -o "$WORK/time.$key" "$@" > "$RES/$key.out" 2> "$RES/$key.err"; then
    tail -n 15 "$RES/$key.err" >&2
    die "$key failed: $*"
  fi
  read -r e m u s < "$WORK/time.$key"
  T[$key]=$e
  M[$key]=$m
  C[$key]=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.1f", u + s }')
  log "$key: ${e} s, peak RSS $((m / 1024)) MiB"
}
stored() { du -sb "$1" | cut -f1; }

REPO="$WORK/pullback-repo"
VNB_PLAIN="$WORK/vnb-plain"
VNB_LZ4="$WORK/vnb-lz4"
# shellcheck disable=SC2086 # PULLBACK_INIT_ARGS is a list of words, e.g. "--chunk-size 256K"
"$PULLBACK" init --repo "$REPO" $PULLBACK_INIT_ARGS > "$RES/init.out"

backup_step() { # STEP PULLBACK_LEVEL VNB_LEVEL
  local step=$1
  local wrap=()
  # A profile of each pullback backup (perf.data beside its output); the times are then
  # perf's too: for finding where the time goes, not for the table.
  [ "$PULLBACK_PERF" = 1 ] && wrap=(env NODE_OPTIONS=--perf-basic-prof perf record -F 499 -g -o "$RES/$step.pullback.perf.data" --)
  run_timed "$step.pullback" "${wrap[@]}" "$PULLBACK" backup --repo "$REPO" --domain "$DOM_PB" --level "$2" --json
  S[$step.pullback]=$(stored "$REPO")
  run_timed "$step.vnb" virtnbdbackup -d "$DOM_PLAIN" -l "$3" -o "$VNB_PLAIN" --noprogress
  S[$step.vnb]=$(stored "$VNB_PLAIN")
  run_timed "$step.vnbz" virtnbdbackup -d "$DOM_LZ4" -l "$3" -z -o "$VNB_LZ4" --noprogress
  S[$step.vnbz]=$(stored "$VNB_LZ4")
}

# Same page-cache state for every tool's first read: each image fully cached.
for d in "${DOMS[@]}"; do cat "$WORK/$d.qcow2" > /dev/null; done
backup_step full full full
apply_changes inc1 "$CHANGE_MIB" 0
backup_step inc1 incremental inc
backup_step inc2 incremental inc
apply_changes inc3 "$CHANGE3_MIB" "$ZERO3_MIB"
backup_step inc3 incremental inc

# ---- restore -----------------------------------------------------------------------------
for d in "${DOMS[@]}"; do virsh -q destroy "$d" >/dev/null; done
log "checking that every domain's image now reads exactly as the reference"
for d in "${DOMS[@]}"; do
  qemu-img compare -q -f raw -F qcow2 "$REF" "$WORK/$d.qcow2" || die "$d's image differs from the reference: the guest writes did not all land"
done
OUT="$WORK/restore"
mkdir -p "$OUT"
run_timed restore.pullback "$PULLBACK" restore --repo "$REPO" --domain "$DOM_PB" --backup latest --disk vda --format qcow2 --output "$OUT/pullback.qcow2" --json
run_timed restore.pullback-raw "$PULLBACK" restore --repo "$REPO" --domain "$DOM_PB" --backup latest --disk vda --format raw --output "$OUT/pullback.raw" --json
run_timed restore.vnb virtnbdrestore -i "$VNB_PLAIN" -o "$OUT/vnb-plain" --noprogress -L "$RES/virtnbdrestore-plain.log"
run_timed restore.vnbz virtnbdrestore -i "$VNB_LZ4" -o "$OUT/vnb-lz4" --noprogress -L "$RES/virtnbdrestore-lz4.log"

sha_file() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }
sha_qcow2() { nbdcopy -- [ qemu-nbd -r -f qcow2 "$1" ] - | openssl dgst -sha256 -r | cut -d' ' -f1; }
log "hashing the reference and the four restores"
want=$(sha_file "$REF")
declare -A IMG=(
  [pullback qcow2]="qcow2 $OUT/pullback.qcow2"
  [pullback raw]="raw $OUT/pullback.raw"
  [virtnbdrestore (plain chain)]="qcow2 $OUT/vnb-plain/$DOM_PLAIN.qcow2"
  [virtnbdrestore (-z chain)]="qcow2 $OUT/vnb-lz4/$DOM_LZ4.qcow2"
)
declare -A H DIFF
for k in "${!IMG[@]}"; do
  read -r fmt path <<< "${IMG[$k]}"
  if [ "$fmt" = raw ]; then H[$k]=$(sha_file "$path"); else H[$k]=$(sha_qcow2 "$path"); fi
  # Where a wrong restore first differs, for the report (qemu-img compare stops at the first).
  if [ "${H[$k]}" != "$want" ]; then DIFF[$k]=$(qemu-img compare -f raw -F "$fmt" "$REF" "$path" 2>&1 | head -n 2 | tr '\n' ' ' || true); fi
done

# ---- report ------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
human() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.1f MiB", b / 1048576; else printf "%.1f KiB", b / 1024 }'; }
sum_of() { # REGEX FILE: sum of the numbers in every match
  { grep -o "$1" "$2" || true; } | grep -o '[0-9][0-9]*' | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
delta() { # STEP TOOL PREV_STEP
  local prev=0
  [ -n "$3" ] && prev=${S[$3.$2]}
  human $((${S[$1.$2]} - prev))
}
{
  echo "## pullback vs virtnbdbackup $(dpkg-query -W -f='${Version}' virtnbdbackup) — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Guest vCPUs: $GUEST_VCPUS (GUEST_VCPUS; the domains boot no OS)."
  if [ -n "$PULLBACK_INIT_ARGS" ]; then echo "pullback repository: \`pullback init $PULLBACK_INIT_ARGS\` (PULLBACK_INIT_ARGS), not the default."; fi
  echo "Disk: ${DISK_MIB} MiB qcow2 (${RANDOM_MIB} MiB random, ${TEXT_MIB} MiB text, ${ZERO_MIB} MiB zeroes); text alone: zstd -3 $(ratio "$SAMPLE" "$TEXT_ZSTD")x, lz4 -1 $(ratio "$SAMPLE" "$TEXT_LZ4")x."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); pullback $PB_COMMIT ($PB_REF); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Ratios are pullback time / virtnbdbackup time (lower is better). vnb = virtnbdbackup, vnb -z = virtnbdbackup -z (lz4). Stored = bytes added by the step (du -sb)."
  echo
  echo "| operation | pullback s | vnb s | vnb -z s | ratio vs vnb | ratio vs vnb -z | target | pullback RSS MiB | vnb RSS MiB | vnb -z RSS MiB | pullback stored | vnb stored | vnb -z stored |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  row() { # STEP LABEL TARGET PREV
    echo "| $2 | ${T[$1.pullback]} | ${T[$1.vnb]} | ${T[$1.vnbz]} | $(ratio "${T[$1.pullback]}" "${T[$1.vnb]}") | $(ratio "${T[$1.pullback]}" "${T[$1.vnbz]}") | $3 | $(mb "${M[$1.pullback]}") | $(mb "${M[$1.vnb]}") | $(mb "${M[$1.vnbz]}") | $(delta "$1" pullback "$4") | $(delta "$1" vnb "$4") | $(delta "$1" vnbz "$4") |"
  }
  row full "full backup" "≤ 1.0 vs vnb, ≤ 0.5 vs vnb -z" ""
  row inc1 "incremental, ${CHANGE_MIB} MiB scattered writes" "≤ 0.5" full
  row inc2 "incremental, nothing changed" "≤ 0.35" inc1
  row inc3 "incremental, ${CHANGE3_MIB} MiB writes + ${ZERO3_MIB} MiB zeroes" "—" inc2
  echo "| restore full + 3 incrementals (qcow2) | ${T[restore.pullback]} | ${T[restore.vnb]} | ${T[restore.vnbz]} | $(ratio "${T[restore.pullback]}" "${T[restore.vnb]}") | $(ratio "${T[restore.pullback]}" "${T[restore.vnbz]}") | ≤ 0.4 | $(mb "${M[restore.pullback]}") | $(mb "${M[restore.vnb]}") | $(mb "${M[restore.vnbz]}") | | | |"
  echo "| restore, pullback --format raw | ${T[restore.pullback-raw]} | | | $(ratio "${T[restore.pullback-raw]}" "${T[restore.vnb]}") | $(ratio "${T[restore.pullback-raw]}" "${T[restore.vnbz]}") | | $(mb "${M[restore.pullback-raw]}") | | | | | |"
  echo "| **total stored** | | | | | | ≤ vnb -z | | | | $(human "${S[inc3.pullback]}") | $(human "${S[inc3.vnb]}") | $(human "${S[inc3.vnbz]}") |"
  echo
  echo "CPU seconds (user+sys of the tool's own processes; QEMU's NBD server is not included):"
  echo
  echo "| operation | pullback | vnb | vnb -z |"
  echo "|---|---|---|---|"
  for s in full inc1 inc2 inc3 restore; do echo "| $s | ${C[$s.pullback]} | ${C[$s.vnb]} | ${C[$s.vnbz]} |"; done
  echo "| restore raw | ${C[restore.pullback-raw]} | | |"
  echo
  echo "Read over NBD (pullback: bytesRead of its --json, whole chunks; virtnbdbackup: the 'bytes of data extents to backup' it logs):"
  echo
  echo "| step | pullback | vnb | vnb -z |"
  echo "|---|---|---|---|"
  for s in full inc1 inc2 inc3; do
    echo "| $s | $(human "$(sum_of '"bytesRead":[0-9]*' "$RES/$s.pullback.out")") | $(human "$(sum_of '[0-9]* bytes of data extents' "$RES/$s.vnb.err")") | $(human "$(sum_of '[0-9]* bytes of data extents' "$RES/$s.vnbz.err")") |"
  done
  echo
  peak=0
  for k in "${!M[@]}"; do case $k in *.pullback|*.pullback-raw) [ "${M[$k]}" -gt "$peak" ] && peak=${M[$k]};; esac; done
  check() { # LABEL VALUE LIMIT (met when VALUE <= LIMIT)
    awk -v l="$1" -v v="$2" -v t="$3" 'BEGIN { printf "- %s: %s (target ≤ %s) %s\n", l, v, t, (v + 0 <= t + 0 ? "MET" : "MISSED") }'
  }
  echo "Targets:"
  echo
  check "full vs vnb" "$(ratio "${T[full.pullback]}" "${T[full.vnb]}")" 1.0
  check "full vs vnb -z" "$(ratio "${T[full.pullback]}" "${T[full.vnbz]}")" 0.5
  check "${CHANGE_MIB} MiB incremental vs vnb" "$(ratio "${T[inc1.pullback]}" "${T[inc1.vnb]}")" 0.5
  check "${CHANGE_MIB} MiB incremental vs vnb -z" "$(ratio "${T[inc1.pullback]}" "${T[inc1.vnbz]}")" 0.5
  check "no-change incremental vs vnb" "$(ratio "${T[inc2.pullback]}" "${T[inc2.vnb]}")" 0.35
  check "no-change incremental vs vnb -z" "$(ratio "${T[inc2.pullback]}" "${T[inc2.vnbz]}")" 0.35
  check "bytes stored vs vnb -z" "$(ratio "${S[inc3.pullback]}" "${S[inc3.vnbz]}")" 1.0
  check "pullback peak RSS MiB" "$(mb "$peak")" 200
  check "restore vs virtnbdrestore (plain chain)" "$(ratio "${T[restore.pullback]}" "${T[restore.vnb]}")" 0.4
  check "restore vs virtnbdrestore (-z chain)" "$(ratio "${T[restore.pullback]}" "${T[restore.vnbz]}")" 0.4
  echo
  echo "Restores (sha256 of the raw content; reference $want):"
  echo
  for k in "pullback qcow2" "pullback raw" "virtnbdrestore (plain chain)" "virtnbdrestore (-z chain)"; do
    if [ "${H[$k]}" = "$want" ]; then echo "- $k: identical"; else echo "- $k: MISMATCH ${H[$k]} (${DIFF[$k]})"; fi
  done
} > "$RES/table.md"
cat "$RES/table.md"
log "results in $RES"
if grep -q MISMATCH "$RES/table.md"; then die "a restore does not match the reference"; fi
