// <domaincheckpoint> documents (libvirt formatcheckpoint.rst). Pure: no I/O.
//
// A *checkpoint* names a point in time from which QEMU tracks writes in one persistent dirty
// bitmap per included disk (checkpoint='bitmap'; libvirt names the bitmap after the
// checkpoint). Excluded disks get checkpoint='no'. Checkpoints form a chain through <parent>.
import { PullbackError } from '../errors.js';
import { child, childElements, childText, el, expectRoot, parseXml, removeChildren, serializeXml } from './xml-tree.js';
import type { XmlElement } from './xml-tree.js';

export interface CheckpointSpec {
  name: string;
  description?: string;
  /** Every disk of the domain: true → tracked by a bitmap, false → checkpoint='no'. */
  disks: Array<{ name: string; checkpoint: boolean }>;
}

export interface CheckpointDiskInfo {
  name: string;
  checkpoint: 'bitmap' | 'no';
  /** Bitmap name in the qcow2 image; libvirt uses the checkpoint name. */
  bitmap: string | null;
  /** Bytes dirtied since the checkpoint; only with `checkpoint-dumpxml --size`. */
  size: number | null;
}

export interface CheckpointInfo {
  name: string;
  description: string | null;
  parent: string | null;
  /** Seconds since the epoch, as libvirt records it. */
  creationTime: number | null;
  disks: CheckpointDiskInfo[];
  /** True when the XML embeds the <domain> it was taken of (needed by nothing, kept for redefine). */
  hasDomain: boolean;
}

/** Builds the XML for `virsh checkpoint-create` (or as the second argument of backup-begin). */
export function buildCheckpointXml(spec: CheckpointSpec): string {
  if (spec.name === '') throw new PullbackError('XML_INVALID', 'checkpoint name must not be empty');
  const children: XmlElement[] = [el('name', {}, spec.name)];
  if (spec.description !== undefined) children.push(el('description', {}, spec.description));
  children.push(
    el(
      'disks',
      {},
      spec.disks.map((d) => el('disk', { name: d.name, checkpoint: d.checkpoint ? 'bitmap' : 'no' })),
    ),
  );
  return serializeXml({ prolog: [], root: el('domaincheckpoint', {}, children) }, { indent: true });
}

/** Parses `virsh checkpoint-dumpxml` output (with or without --no-domain / --size). */
export function parseCheckpointXml(xml: string): CheckpointInfo {
  const what = 'checkpoint XML';
  const root = expectRoot(parseXml(xml, what), 'domaincheckpoint', what);
  const name = childText(root, 'name');
  if (name === undefined || name === '') throw new PullbackError('XML_INVALID', `${what} has no <name>`);
  const parentEl = child(root, 'parent');
  const created = childText(root, 'creationTime');
  const disksEl = child(root, 'disks');
  return {
    name,
    description: childText(root, 'description') ?? null,
    parent: parentEl === undefined ? null : (childText(parentEl, 'name') ?? null),
    creationTime: created === undefined ? null : toInt(created, `${what} of ${name}: <creationTime>`),
    disks: disksEl === undefined ? [] : childElements(disksEl, 'disk').map((d) => parseDisk(d, name)),
    hasDomain: child(root, 'domain') !== undefined,
  };
}

/**
 * The checkpoint XML without its <parent>, for `checkpoint-create --redefine` of a single
 * checkpoint whose parent libvirt no longer knows (pullback deletes older checkpoints;
 * libvirt refuses to redefine a checkpoint whose parent is missing).
 */
export function checkpointXmlWithoutParent(xml: string): string {
  const doc = parseXml(xml, 'checkpoint XML');
  removeChildren(expectRoot(doc, 'domaincheckpoint', 'checkpoint XML'), 'parent');
  return serializeXml(doc);
}

function parseDisk(d: XmlElement, checkpoint: string): CheckpointDiskInfo {
  const name = d.attrs['name'];
  if (name === undefined) throw new PullbackError('XML_INVALID', `checkpoint ${checkpoint}: a <disk> has no name`);
  const mode = d.attrs['checkpoint'] ?? 'bitmap';
  if (mode !== 'bitmap' && mode !== 'no') {
    throw new PullbackError('XML_INVALID', `checkpoint ${checkpoint}, disk ${name}: unknown checkpoint='${mode}'`);
  }
  const size = d.attrs['size'];
  return {
    name,
    checkpoint: mode,
    bitmap: d.attrs['bitmap'] ?? null,
    size: size === undefined ? null : toInt(size, `checkpoint ${checkpoint}, disk ${name}: size`),
  };
}

function toInt(s: string, what: string): number {
  if (!/^\d+$/.test(s.trim())) throw new PullbackError('XML_INVALID', `${what} is not a number: '${s}'`);
  return Number(s.trim());
}
