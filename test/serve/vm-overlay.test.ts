// A VM running on a qcow2 overlay whose backing file is the served backup: the use case
// "test-boot a backup without restoring it". The test domain boots no OS, but its QEMU
// opens the overlay and the NBD backing through libvirt exactly as for a real guest; a guest
// write of 4 KiB inside a 64 KiB qcow2 cluster makes QEMU copy the rest of the cluster from
// the backing, i.e. read the backup over NBD. Afterwards the overlay holds the guest's view
// (backup + write) and the backup itself is unchanged.
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type ServeHandle } from '../../src/serve/index.js';
import { createTestDomain, type TestDomain } from '../helpers/domain.js';
import { buildFixture, pseudoRandom, type Fixture } from './fixture.js';
import { run } from './helpers.js';

let f: Fixture;
let h: ServeHandle | undefined;
let dom: TestDomain | undefined;

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  f = await buildFixture('serve-vm');
});

afterAll(async () => {
  await dom?.destroy();
  await h?.close();
  await f?.cleanup();
});

describe('a VM on a qcow2 overlay over the export', () => {
  it('reads the backup through NBD and writes only to the overlay', async () => {
    const rec = f.backups[2]?.record;
    const backup = f.backups[2]?.images.get('vdb') as Buffer; // 9 x 64 KiB: a whole number of sectors
    if (rec === undefined) throw new Error('fixture');
    h = await startServe(f.repo, { backupId: rec.id, disk: 'vdb', socket: join(f.dir, 'vm.sock'), workers: 1 });
    dom = await createTestDomain({ disks: [{ size: backup.length, format: 'qcow2' }], start: false });
    const disk = dom.disks[0];
    if (disk === undefined) throw new Error('domain has no disk');
    await rm(disk.path);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', h.uri, disk.path]);
    await dom.start();
    const data = pseudoRandom(4096, 99);
    await dom.write('vda', 3 * 65536 + 8192, data);
    await dom.shutdown();
    expect(h.server.totalConnections).toBeGreaterThanOrEqual(1);

    const flat = join(f.dir, 'vm-flat.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', disk.path, flat]);
    const want = Buffer.from(backup);
    data.copy(want, 3 * 65536 + 8192);
    expect(sha(await readFile(flat))).toBe(sha(want));
    const direct = join(f.dir, 'vm-direct.raw');
    await run('nbdcopy', [h.uri, direct]);
    expect(sha(await readFile(direct))).toBe(sha(backup));
  });
});
