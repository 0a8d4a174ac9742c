// Reading a <domain> document (libvirt formatdomain.rst, "Hard drives, floppy disks,
// CDROMs"). Pure: no I/O. The domain's run state is not in the XML: ask `Libvirt.domainState`.
//
// Terms: a disk's *target* is its guest device name (vda) and identifies it in backup and
// checkpoint XML; its *source type* says where the data lives (file, block device, network
// protocol, storage pool volume); its *driver type* is the image format QEMU opens (qcow2,
// raw). A disk is *backupable* when libvirt can export it in a backup job (a writable disk
// with media); it is *incremental-capable* when it can also carry a persistent dirty bitmap,
// which needs a qcow2 image on a file or block device (formatcheckpoint.rst).
import { PullbackError } from '../errors.js';
import { child, childElements, childText, expectRoot, parseXml } from './xml-tree.js';
import type { XmlElement } from './xml-tree.js';

export type DiskDevice = 'disk' | 'cdrom' | 'floppy' | 'lun';
export const DISK_SOURCE_TYPES = ['file', 'block', 'network', 'volume', 'dir', 'nvme', 'vhostuser'] as const;
export type DiskSourceType = (typeof DISK_SOURCE_TYPES)[number];

export interface DomainDisk {
  /** Guest device name, e.g. vda. */
  target: string;
  bus: string | null;
  device: DiskDevice;
  sourceType: DiskSourceType;
  /**
   * Where the data lives: the path for file/block/dir, 'protocol:name' for network
   * (e.g. 'nbd:export1'), 'pool/volume' for volume; null when there is no medium.
   */
  source: string | null;
  /** Image format (qcow2, raw, ...), null if the XML does not say. */
  driverType: string | null;
  readonly: boolean;
  shareable: boolean;
  /** True when the image has a backing chain (a non-empty <backingStore>). */
  hasBackingStore: boolean;
  /** QEMU device alias (virtio-disk0); only in the XML of a running domain. */
  alias: string | null;
  backupable: boolean;
  incrementalCapable: boolean;
}

export interface DomainInfo {
  name: string;
  uuid: string | null;
  /** Hypervisor type: kvm or qemu. */
  type: string;
  /** Run id; only in the XML of a running domain. */
  id: number | null;
  disks: DomainDisk[];
}

/** Parses `virsh dumpxml` output (live or --inactive). */
export function parseDomainXml(xml: string): DomainInfo {
  const what = 'domain XML';
  const root = expectRoot(parseXml(xml, what), 'domain', what);
  const name = childText(root, 'name');
  if (name === undefined || name === '') throw new PullbackError('XML_INVALID', `${what} has no <name>`);
  const devices = child(root, 'devices');
  const id = root.attrs['id'];
  return {
    name,
    uuid: childText(root, 'uuid') ?? null,
    type: root.attrs['type'] ?? 'qemu',
    id: id === undefined || !/^-?\d+$/.test(id) ? null : Number(id),
    disks: devices === undefined ? [] : childElements(devices, 'disk').map((d) => parseDisk(d, name)),
  };
}

function parseDisk(d: XmlElement, domain: string): DomainDisk {
  const targetEl = child(d, 'target');
  const target = targetEl?.attrs['dev'];
  if (target === undefined) {
    throw new PullbackError('XML_INVALID', `domain ${domain}: a <disk> has no <target dev=...>`);
  }
  const device = d.attrs['device'] ?? 'disk';
  if (device !== 'disk' && device !== 'cdrom' && device !== 'floppy' && device !== 'lun') {
    throw new PullbackError('XML_INVALID', `domain ${domain}, disk ${target}: unknown device='${device}'`);
  }
  const sourceType = d.attrs['type'] ?? 'file';
  if (!isSourceType(sourceType)) {
    throw new PullbackError('XML_INVALID', `domain ${domain}, disk ${target}: unknown disk type='${sourceType}'`);
  }
  const source = sourceOf(child(d, 'source'), sourceType);
  const driverType = child(d, 'driver')?.attrs['type'] ?? null;
  const readonly = child(d, 'readonly') !== undefined;
  const backing = child(d, 'backingStore');
  const backupable = (device === 'disk' || device === 'lun') && !readonly && source !== null;
  return {
    target,
    bus: targetEl?.attrs['bus'] ?? null,
    device,
    sourceType,
    source,
    driverType,
    readonly,
    shareable: child(d, 'shareable') !== undefined,
    hasBackingStore: backing !== undefined && (backing.attrs['type'] !== undefined || childElements(backing).length > 0),
    alias: child(d, 'alias')?.attrs['name'] ?? null,
    backupable,
    incrementalCapable:
      backupable && device === 'disk' && driverType === 'qcow2' && (sourceType === 'file' || sourceType === 'block'),
  };
}

function isSourceType(s: string): s is DiskSourceType {
  return (DISK_SOURCE_TYPES as readonly string[]).includes(s);
}

function sourceOf(src: XmlElement | undefined, type: DiskSourceType): string | null {
  if (src === undefined) return null;
  const a = src.attrs;
  switch (type) {
    case 'file':
      return a['file'] ?? null;
    case 'block':
      return a['dev'] ?? null;
    case 'dir':
      return a['dir'] ?? null;
    case 'network':
      return a['protocol'] === undefined ? null : `${a['protocol']}:${a['name'] ?? ''}`;
    case 'volume':
      return a['pool'] === undefined || a['volume'] === undefined ? null : `${a['pool']}/${a['volume']}`;
    case 'nvme':
    case 'vhostuser':
      return a['path'] ?? (a['type'] === undefined ? null : a['type']);
  }
}
