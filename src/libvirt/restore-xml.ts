// Rewriting a backed-up <domain> document so it can be defined as a new, independent domain
// next to the original (restore --define NEWNAME). Pure: no I/O.
//
// Everything not named below is kept as it was, including elements and attributes this code
// does not know (metadata of other tools, newer libvirt features). Changed:
//   - <name> becomes the new name; <uuid> becomes the given one, or is removed so libvirt
//     generates one; the runtime-only root attribute id= is dropped.
//   - every <interface><mac> gets the given address, or is removed so libvirt generates one
//     (two domains with one MAC on one network would fight over it).
//   - each disk listed in `disks` points at its restored image: type='file', a fresh
//     <source file=...> (a file disk keeps its other source attributes), driver type = the
//     restored format, no <backingStore> (restored images are flat), and a network disk's
//     <auth> goes; a device='lun' (SCSI passthrough, block only) becomes device='disk'.
//     A disk mapped to 'remove' is dropped.
//   - a writable disk (device disk/lun without <readonly/>) that is not listed is an error:
//     the new domain would write into the original domain's image. Read-only media (cdrom,
//     floppy, readonly disks) not listed are kept as they are.
//   - <os><nvram> with a path loses the path (libvirt creates a fresh one from the template
//     for the new name), unless `nvram` gives a path: two domains must not share NVRAM.
// Start from `virsh dumpxml --inactive`: a live document carries runtime state (aliases,
// source index, dynamic seclabels) that libvirt may reject or misapply on define.
import { PullbackError } from '../errors.js';
import { child, childElements, el, expectRoot, parseXml, removeChildren, serializeXml } from './xml-tree.js';
import type { XmlElement, XmlNode } from './xml-tree.js';

export interface RestoredDisk {
  path: string;
  format: 'qcow2' | 'raw';
}

export interface RestoreDomainOptions {
  name: string;
  /** New UUID; absent → the <uuid> element is removed and libvirt generates one. */
  uuid?: string;
  /** New MACs in <interface> order; absent → <mac> elements are removed. */
  macs?: string[];
  /** Per target dev: the restored image, or 'remove' to drop the disk from the new domain. */
  disks: Record<string, RestoredDisk | 'remove'>;
  /** NVRAM file for the new domain; absent → path removed so libvirt makes a new one. */
  nvram?: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function transformDomainForRestore(xml: string, opts: RestoreDomainOptions): string {
  const what = 'domain XML for restore';
  const doc = parseXml(xml, what);
  const root = expectRoot(doc, 'domain', what);
  const oldName = textOfName(root);
  const where = `domain ${oldName} restored as ${opts.name}`;
  if (opts.name.trim() === '' || opts.name.includes('/')) {
    throw new PullbackError('XML_INVALID', `${where}: invalid domain name '${opts.name}'`);
  }
  delete root.attrs['id'];
  setText(root, 'name', opts.name);
  if (opts.uuid === undefined) removeChildren(root, 'uuid');
  else {
    if (!UUID_RE.test(opts.uuid)) throw new PullbackError('XML_INVALID', `${where}: invalid UUID '${opts.uuid}'`);
    setText(root, 'uuid', opts.uuid);
  }
  const devices = child(root, 'devices');
  if (devices !== undefined) {
    rewriteMacs(devices, opts.macs, where);
    rewriteDisks(devices, opts.disks, where);
  } else if (Object.keys(opts.disks).length > 0) {
    throw new PullbackError('XML_INVALID', `${where}: the domain has no <devices>`);
  }
  const os = child(root, 'os');
  const nvram = os === undefined ? undefined : child(os, 'nvram');
  if (nvram !== undefined) {
    nvram.children = opts.nvram === undefined ? [] : [{ kind: 'text', text: opts.nvram }];
  }
  return serializeXml(doc);
}

function textOfName(root: XmlElement): string {
  const name = child(root, 'name');
  const t = name?.children.find((c) => c.kind === 'text');
  return t?.kind === 'text' ? t.text.trim() : '(unnamed)';
}

/** Replaces the text of child `name`, creating it after the first child element if absent. */
function setText(parent: XmlElement, name: string, text: string): void {
  const existing = child(parent, name);
  if (existing !== undefined) {
    existing.children = [{ kind: 'text', text }];
    return;
  }
  // Insert right after <name> (libvirt's own order) with the same indentation as <name>.
  const nameIdx = parent.children.findIndex((c) => c.kind === 'element' && c.name === 'name');
  const indent = parent.children[nameIdx - 1];
  const added: XmlNode[] = [el(name, {}, text)];
  if (indent?.kind === 'text' && indent.text.trim() === '') added.unshift({ kind: 'text', text: indent.text });
  parent.children.splice(nameIdx + 1, 0, ...added);
}

function rewriteMacs(devices: XmlElement, macs: string[] | undefined, where: string): void {
  const interfaces = childElements(devices, 'interface');
  if (macs === undefined) {
    for (const iface of interfaces) removeChildren(iface, 'mac');
    return;
  }
  if (macs.length !== interfaces.length) {
    throw new PullbackError(
      'XML_INVALID',
      `${where}: ${macs.length} MAC address(es) given for ${interfaces.length} interface(s)`,
    );
  }
  interfaces.forEach((iface, i) => {
    const mac = macs[i] ?? '';
    if (!MAC_RE.test(mac)) throw new PullbackError('XML_INVALID', `${where}: invalid MAC address '${mac}'`);
    const existing = child(iface, 'mac');
    if (existing !== undefined) existing.attrs['address'] = mac;
    else iface.children.unshift(el('mac', { address: mac }));
  });
}

function rewriteDisks(devices: XmlElement, disks: RestoreDomainOptions['disks'], where: string): void {
  const seen = new Set<string>();
  devices.children = devices.children.filter((node, i, all) => {
    if (node.kind !== 'element' || node.name !== 'disk') return true;
    const target = child(node, 'target')?.attrs['dev'];
    if (target === undefined) throw new PullbackError('XML_INVALID', `${where}: a <disk> has no <target dev=...>`);
    seen.add(target);
    const plan = disks[target];
    if (plan === 'remove') {
      // Also drop the indentation before it so the output keeps its layout.
      const prev = all[i - 1];
      if (prev?.kind === 'text' && prev.text.trim() === '') prev.text = '';
      return false;
    }
    if (plan === undefined) {
      const device = node.attrs['device'] ?? 'disk';
      const writable = (device === 'disk' || device === 'lun') && child(node, 'readonly') === undefined;
      if (writable) {
        throw new PullbackError(
          'XML_INVALID',
          `${where}: writable disk ${target} has no restored image; restore it or map it to 'remove' ` +
            `(otherwise the new domain would write into the original's image)`,
        );
      }
      return true;
    }
    pointDiskAt(node, plan, target, where);
    return true;
  });
  for (const target of Object.keys(disks)) {
    if (!seen.has(target)) throw new PullbackError('XML_INVALID', `${where}: the domain has no disk ${target}`);
  }
}

function pointDiskAt(disk: XmlElement, plan: RestoredDisk, target: string, where: string): void {
  if (!plan.path.startsWith('/')) {
    throw new PullbackError('XML_INVALID', `${where}, disk ${target}: image path must be absolute, got '${plan.path}'`);
  }
  const wasFile = (disk.attrs['type'] ?? 'file') === 'file';
  const wasNetwork = disk.attrs['type'] === 'network';
  disk.attrs['type'] = 'file';
  if (disk.attrs['device'] === 'lun') {
    // SCSI passthrough needs a block device; the restored image is a file: plain disk.
    disk.attrs['device'] = 'disk';
    delete disk.attrs['sgio'];
    delete disk.attrs['rawio'];
  }
  const source = child(disk, 'source');
  if (source !== undefined && wasFile) {
    delete source.attrs['index'];
    source.attrs['file'] = plan.path;
  } else if (source !== undefined) {
    source.attrs = { file: plan.path };
    source.children = [];
  } else {
    // No medium before (e.g. an empty drive); add <source> before <target>.
    const at = disk.children.findIndex((c) => c.kind === 'element' && c.name === 'target');
    disk.children.splice(at < 0 ? disk.children.length : at, 0, el('source', { file: plan.path }));
  }
  const driver = child(disk, 'driver');
  if (driver !== undefined) driver.attrs['type'] = plan.format;
  else disk.children.unshift(el('driver', { name: 'qemu', type: plan.format }));
  removeChildren(disk, 'backingStore');
  if (wasNetwork) removeChildren(disk, 'auth');
}
