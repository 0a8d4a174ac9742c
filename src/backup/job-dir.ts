// The private directory of one backup job: `<scratch-dir>/pullback-<backup-id>/`, mode 0700,
// holding QEMU's NBD socket, the scratch files (old contents of blocks the guest overwrites
// while the job runs) and owner.json (which process runs the job). The backup id in the
// path is how a later run recognises a job left behind by a killed pullback
// (backup-dumpxml shows the socket path).
import { mkdir, rm, writeFile, access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { PullbackError, errorMessage } from '../errors.js';

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
