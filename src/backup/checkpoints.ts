// libvirt checkpoint housekeeping around a backup.
//
// - ensureBaseCheckpoint: when libvirt lost the metadata of the base backup's checkpoint
//   (domain undefined and defined again, libvirtd state wiped) while the qcow2 bitmaps
//   survive, redefine it from the checkpoint XML stored with the backup
//   (`checkpoint-create --redefine --redefine-validate`: libvirt checks the bitmaps exist).
// - olderCheckpoints: after a complete backup only its own checkpoint is needed; older
//   pullback.* checkpoints are deleted so bitmaps do not pile up in the images (each costs
//   QEMU a little work on every guest write). Checkpoints of other tools are left alone.
import { errorMessage } from '../errors.js';
import { checkpointXmlWithoutParent } from '../libvirt/checkpoint-xml.js';
import type { Libvirt } from '../libvirt/libvirt.js';
import type { BackupRecord } from '../store/index.js';

export const CHECKPOINT_PREFIX = 'pullback.';

/** Returns the domain's checkpoint names as libvirt has them afterwards. */
export async function ensureBaseCheckpoint(
  domain: string,
  base: BackupRecord | undefined,
  deps: { libvirt: Libvirt; log: (m: string) => void; running: boolean },
): Promise<string[]> {
  const { libvirt, log } = deps;
  const names = await libvirt.checkpointList(domain);
  if (base === undefined || base.checkpoint === '' || names.includes(base.checkpoint)) return names;
  if (base.checkpointXml === undefined || !deps.running) return names;
  try {
    await libvirt.checkpointCreate(domain, checkpointXmlWithoutParent(base.checkpointXml), { redefine: true, validate: true });
    log(`domain ${domain}: libvirt had lost checkpoint ${base.checkpoint}; redefined it from backup ${base.id}`);
  } catch (e) {
    log(`domain ${domain}: checkpoint ${base.checkpoint} is missing and could not be redefined (${errorMessage(e)})`);
  }
  return libvirt.checkpointList(domain);
}

/**
 * The pullback checkpoints older than `keep` in `names` (libvirt's list from just before the
 * backup began, parents first: deleting the oldest first never needs a bitmap merge). Only
 * the run that created `keep` makes pullback checkpoints of the domain meanwhile.
 */
export function olderCheckpoints(names: readonly string[], keep: string): string[] {
  return names.filter((n) => n !== keep && n.startsWith(CHECKPOINT_PREFIX));
}
