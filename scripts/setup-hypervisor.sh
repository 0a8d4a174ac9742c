#!/usr/bin/env bash
# Idempotent hypervisor setup for a Debian 12 machine without systemd (root).
# Installs QEMU, libvirt and the NBD tools, then starts virtlogd and libvirtd
# when they are not already running. Recipe: shared/notes/libvirt-on-this-machine.md.
set -euo pipefail

PKGS=(qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu
      libvirt-clients libnbd-bin nbdkit)
# Extra tools used by tests and benchmarks (procps for pgrep, faketime for a clock set wrong).
PKGS+=(procps faketime)

log() { printf 'setup-hypervisor: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "must run as root (installs Debian packages and starts libvirtd)"; exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirt 9 resolves its built-in default user before reading qemu.conf.
getent passwd libvirt-qemu >/dev/null || useradd -r -s /usr/sbin/nologin libvirt-qemu
getent group kvm >/dev/null || groupadd -r kvm
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/images

conf=/etc/libvirt/qemu.conf
if ! grep -q '^# pullback: run qemu as root' "$conf" 2>/dev/null; then
  printf '\n# pullback: run qemu as root without a security driver (no systemd/apparmor here)\nuser = "root"\ngroup = "root"\nsecurity_driver = "none"\n' >> "$conf"
fi

pgrep -x virtlogd >/dev/null || /usr/sbin/virtlogd -d
if ! pgrep -x libvirtd >/dev/null; then
  /usr/sbin/libvirtd -d
fi
for _ in $(seq 1 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && break
  sleep 0.2
done
virsh -c qemu:///system version >/dev/null || { log "libvirtd did not come up; see /var/log/libvirt/libvirtd.log"; exit 1; }

if [ -e /dev/kvm ]; then log "ready (KVM available)"; else log "ready (no /dev/kvm: domains use TCG)"; fi
