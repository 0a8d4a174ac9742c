#!/usr/bin/env bash
# The README's first command: installs everything, creates a throwaway VM with two disks,
# and runs pullback's main job on it: full backup -> guest writes -> incremental backup ->
# restore of each backup -> byte-for-byte verification against what the guest had; serve;
# prune; restore into a live NBD export; check.
# The repository is local to the checkout (.demo/repo) and kept for you to explore.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

PB=./bin/pullback
repo=$PWD/.demo/repo
work=$(mktemp -d /tmp/pullback-demo.XXXXXX)
dom=pullback-demo-$$
cleanup() {
  [ -z "${servepid:-}" ] || kill "$servepid" 2>/dev/null || true
  [ -z "${nbdpid:-}" ] || kill "$nbdpid" 2>/dev/null || true
  virsh -q destroy "$dom" >/dev/null 2>&1 || true
  virsh -q undefine "$dom" --checkpoints-metadata >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# Guest writes go through the VM's virtio disk backend (so QEMU's dirty bitmaps see them),
# and the same bytes go into a reference file: what the guest's disk holds, as a raw image.
gwrite() { # disk index, offset MiB, length MiB, source file
  local i=$1 off=$(( $2 * 1048576 )) len=$(( $3 * 1048576 )) src=$4
  virsh -q qemu-monitor-command "$dom" --hmp \
    "qemu-io -d /machine/peripheral/virtio-disk$i/virtio-backend \"write -s $src $off $len\"" >/dev/null
  dd if="$src" of="$work/ref$i.raw" bs=1M seek="$2" count="$3" conv=notrunc,sparse status=none
}

say "a throwaway VM '$dom' (no OS) with two qcow2 disks: vda 256 MiB, vdb 128 MiB"
qemu-img create -q -f qcow2 "$work/vda.qcow2" 256M
qemu-img create -q -f qcow2 "$work/vdb.qcow2" 128M
truncate -s 256M "$work/ref0.raw"; truncate -s 128M "$work/ref1.raw"
virt=qemu; [ -e /dev/kvm ] && virt=kvm
cat > "$work/dom.xml" <<XML
<domain type='$virt'><name>$dom</name><memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$work/vda.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$work/vdb.qcow2'/><target dev='vdb' bus='virtio'/></disk>
  </devices>
</domain>
XML
virsh -q define "$work/dom.xml" >/dev/null && virsh -q start "$dom" >/dev/null

say "the guest writes 64 MiB of random data to vda and 16 MiB of text to vdb"
head -c 64M /dev/urandom > "$work/rand64"
{ yes 'pullback demo: the guest wrote this line.' || true; } | head -c 16M > "$work/text16"
gwrite 0 8 64 "$work/rand64"
gwrite 1 0 16 "$work/text16"
cp --sparse=always "$work/ref0.raw" "$work/full-vda.raw"; cp --sparse=always "$work/ref1.raw" "$work/full-vdb.raw"

say "a new repository and a full backup"
rm -rf "$repo"; mkdir -p "$(dirname "$repo")"
run $PB init --repo "$repo"
run $PB backup --repo "$repo" --domain "$dom"

say "the guest changes 6 MiB in scattered places (and the same text lands on vda too: deduplicated)"
head -c 1M /dev/urandom > "$work/r1"; head -c 4M /dev/urandom > "$work/r4"
gwrite 0 100 1 "$work/r1"
gwrite 0 200 4 "$work/r4"
gwrite 1 64 1 "$work/r1"
head -c 16M "$work/text16" > "$work/text16b"; gwrite 0 120 16 "$work/text16b"

say "an incremental backup: only the changed chunks are read"
run $PB backup --repo "$repo" --domain "$dom"
run $PB list --repo "$repo"

say "restore both backups and compare them byte for byte with what the guest had"
full=$($PB list --repo "$repo" --json | node -e 'const a=JSON.parse(require("fs").readFileSync(0));console.log(a[0].id)')
run $PB restore --repo "$repo" --domain "$dom" --backup "$full" --output "$work/restore-full" --format raw
run $PB restore --repo "$repo" --domain "$dom" --backup latest --output "$work/restore-latest" --format qcow2 --verify
ok=1
for d in vda vdb; do
  i=0; [ $d = vdb ] && i=1
  want_full=$(sha256sum < "$work/full-$d.raw" | cut -c1-16)
  got_full=$(sha256sum < "$work/restore-full/$d.raw" | cut -c1-16)
  want_now=$(sha256sum < "$work/ref$i.raw" | cut -c1-16)
  got_now=$(qemu-img convert -O raw "$work/restore-latest/$d.qcow2" "$work/latest-$d.raw" && sha256sum < "$work/latest-$d.raw" | cut -c1-16)
  printf '%s  full: guest %s restored %s   incremental: guest %s restored %s\n' "$d" "$want_full" "$got_full" "$want_now" "$got_now"
  [ "$want_full" = "$got_full" ] && [ "$want_now" = "$got_now" ] || ok=0
done

say "instant recovery: serve the latest vda over NBD and read it with nbdinfo and qemu-img, no restore"
sock=$work/serve.sock
$PB serve --repo "$repo" --domain "$dom" --disk vda --socket "$sock" & servepid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
run nbdinfo "nbd+unix:///vda?socket=$sock"
qemu-img convert -O raw "nbd+unix:///vda?socket=$sock" "$work/served-vda.raw"
printf 'served vda: %s   guest vda: %s\n' "$(sha256sum < "$work/served-vda.raw" | cut -c1-16)" "$(sha256sum < "$work/ref0.raw" | cut -c1-16)"
cmp -s "$work/served-vda.raw" "$work/ref0.raw" || ok=0
kill -INT $servepid; wait $servepid || true

say "one more change and backup, then prune to the newest two: the chain stays restorable"
gwrite 0 30 1 "$work/r1"
run $PB backup --repo "$repo" --domain "$dom"
du -sh "$repo" | sed 's/^/repository size before prune: /'
run $PB prune --repo "$repo" --keep-last 2
run $PB list --repo "$repo"
du -sh "$repo" | sed 's/^/repository size after prune: /'
run $PB restore --repo "$repo" --domain "$dom" --backup latest --disk vda --output "$work/after-prune-vda.raw" --format raw
printf 'after prune, latest vda: %s   guest vda: %s\n' "$(sha256sum < "$work/after-prune-vda.raw" | cut -c1-16)" "$(sha256sum < "$work/ref0.raw" | cut -c1-16)"
cmp -s "$work/after-prune-vda.raw" "$work/ref0.raw" || ok=0

say "restore into a live NBD export: a new qcow2 volume for vdb, served by qemu-nbd"
qemu-img create -q -f qcow2 "$work/new-vdb.qcow2" 128M
qemu-nbd -t -f qcow2 --fork --pid-file "$work/qemu-nbd.pid" -k "$work/qemu-nbd.sock" "$work/new-vdb.qcow2"
nbdpid=$(cat "$work/qemu-nbd.pid")
run $PB restore --repo "$repo" --domain "$dom" --disk vdb --output "nbd+unix:///?socket=$work/qemu-nbd.sock" --verify
kill "$nbdpid"; while kill -0 "$nbdpid" 2>/dev/null; do sleep 0.05; done; nbdpid=
qemu-img convert -O raw "$work/new-vdb.qcow2" "$work/nbd-vdb.raw"
printf 'vdb in the new volume: %s   guest vdb: %s\n' "$(sha256sum < "$work/nbd-vdb.raw" | cut -c1-16)" "$(sha256sum < "$work/ref1.raw" | cut -c1-16)"
cmp -s "$work/nbd-vdb.raw" "$work/ref1.raw" || ok=0

say "check the repository"
run $PB check --repo "$repo" --read-data
du -sh "$repo" | sed 's/^/repository size on disk: /'

[ $ok = 1 ] && printf '\nEvery restored disk is identical to the guest disk at its backup.\n' || { echo 'MISMATCH'; exit 1; }
