// libvirt checkpoint housekeeping around a backup.
//
// - ensureBaseCheckpoint: when libvirt lost the metadata of the base backup's checkpoint
//   (domain undefined and defined again, libvirtd state wiped) while the qcow2 bitmaps
//   survive, redefine it from the checkpoint XML stored with the backup
//   (`checkpoint-create --redefine --redefine-validate`: libvirt checks the bitmaps exist).
// - deleteOlderCheckpoints: after a complete backup only its own checkpoint is needed; older
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
 * `known`: the checkpoint names listed just before the backup began, parents first (saves
 * listing them again; only this run creates pullback checkpoints of the domain meanwhile).
 */
export async function deleteOlderCheckpoints(
  domain: string,
  keep: string | undefined,
  deps: { libvirt: Libvirt; log: (m: string) => void; known?: readonly string[] },
): Promise<string[]> {
  if (keep === undefined) return [];
  const { libvirt, log } = deps;
  const deleted: string[] = [];
  let names: readonly string[];
  try {
    names = deps.known ?? (await libvirt.checkpointList(domain));
  } catch (e) {
    log(`domain ${domain}: could not list checkpoints for housekeeping: ${errorMessage(e)}`);
    return deleted;
  }
  // Parents before children: deleting the oldest first never needs a bitmap merge.
  for (const name of names) {
    if (name === keep || !name.startsWith(CHECKPOINT_PREFIX)) continue;
    try {
      await libvirt.checkpointDelete(domain, name);
      deleted.push(name);
    } catch (e) {
      log(`domain ${domain}: could not delete old checkpoint ${name}: ${errorMessage(e)}`);
    }
  }
  return deleted;
}
