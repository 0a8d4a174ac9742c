// The private directory of one backup job: `<scratch-dir>/pullback-<backup-id>/`, mode 0700,
// holding QEMU's NBD socket, the scratch files (old contents of blocks the guest overwrites
// while the job runs) and owner.json (which process runs the job). The backup id in the
// path is how a later run recognises a job left behind by a killed pullback
// (backup-dumpxml shows the socket path).
import { mkdir, rm, writeFile, access, constants, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PullbackError, errorMessage } from '../errors.js';
import { BACKUP_ID } from '../store/backup-id.js';
import { describeOwner, liveness, parseOwner } from '../store/owner.js';

export const DEFAULT_SCRATCH_DIR = '/var/tmp/pullback';

/** A unix socket path must fit in sockaddr_un.sun_path (108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

export interface JobDir {
  path: string;
  socket: string;
  scratch(disk: string): string;
  remove(): Promise<void>;
}

export async function createJobDir(scratchDir: string, backupId: string, owner: unknown): Promise<JobDir> {
  const path = join(scratchDir, `pullback-${backupId}`);
  const socket = join(path, 'nbd.sock');
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new PullbackError('USAGE', `scratch directory ${scratchDir} is too long for a unix socket path; choose a shorter --scratch-dir`);
  }
  try {
    await mkdir(scratchDir, { recursive: true, mode: 0o755 });
    await access(scratchDir, constants.W_OK);
    await mkdir(path, { mode: 0o700 });
    await writeFile(join(path, 'owner.json'), `${JSON.stringify(owner)}\n`);
  } catch (e) {
    throw new PullbackError(
      'BACKUP_FAILED',
      `cannot use scratch directory ${scratchDir}: ${errorMessage(e)}; pass a writable --scratch-dir with room for the blocks the guest writes during the backup`,
      { cause: e },
    );
  }
  return {
    path,
    socket,
    scratch: (disk) => join(path, `${disk}.scratch`),
    remove: () => rm(path, { recursive: true, force: true }),
  };
}

/** The backup id encoded in a job's socket path, if the job is pullback's. */
export function backupIdFromSocket(socket: string | null): string | undefined {
  if (socket === null) return undefined;
  const m = /\/pullback-(\d{8}T\d{6}Z-[0-9a-f]{4})\/nbd\.sock$/.exec(socket);
  return m?.[1];
}

/**
 * Removes the job directories that dead pullback processes left behind and that no job can
 * still use: those without `nbd.sock`, i.e. of offline backups, whose qemu-nbd died with
 * them (qemu-nbd.ts). A directory with `nbd.sock` may serve a libvirt job that still runs:
 * handleLeftoverJob ends that job and removes the directory when its domain is next backed up.
 */
export async function removeDeadJobDirs(scratchDir: string, log: (m: string) => void): Promise<void> {
  const names = await readdir(scratchDir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith('pullback-') || !BACKUP_ID.test(name.slice('pullback-'.length))) continue;
    const dir = join(scratchDir, name);
    const entries = await readdir(dir).catch(() => undefined);
    if (entries === undefined || entries.includes('nbd.sock')) continue;
    const owner = parseOwner((await readFile(join(dir, 'owner.json'), 'utf8').catch(() => '')).trim());
    // No owner file yet: another pullback may be creating it right now.
    if (owner === undefined || liveness(owner) !== 'dead') continue;
    await rm(dir, { recursive: true, force: true });
    log(`removed ${dir}, left behind by a backup whose pullback died (${describeOwner(owner)})`);
  }
}
