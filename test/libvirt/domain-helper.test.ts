// The throwaway-domain helper itself: offline and live writes on qcow2 and raw disks keep the
// references exact, snapshots freeze them, destroy is idempotent and never touches a domain
// it did not define, and the stale sweep removes only what dead processes left behind.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBackupXml } from '../../src/libvirt/backup-xml.js';
import { VirshLibvirt } from '../../src/libvirt/virsh.js';
import { el, serializeXml } from '../../src/libvirt/xml-tree.js';
import { cleanupStaleTestDomains, createTestDomain, sha256File, TEST_DOMAIN_PREFIX } from '../helpers/domain.js';
import type { TestDomain } from '../helpers/domain.js';
import { seededBytes } from '../helpers/seeded-random.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;
const lv = new VirshLibvirt();
const cleanups: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function imageSha(d: TestDomain['disks'][number], work: string): Promise<string> {
  const out = join(work, `${d.target}.img.raw`);
  await execFileP('qemu-img', ['convert', '-f', d.format, '-O', 'raw', d.path, out]);
  try {
    return await sha256File(out);
  } finally {
    await rm(out, { force: true });
  }
}

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  if (child.pid === undefined) throw new Error('no pid');
  return child.pid;
}

describe('createTestDomain', () => {
  it('writes to qcow2 and raw disks, shut off and running, and keeps references exact', async () => {
    const dom = await createTestDomain({ disks: [{ size: 2 * MiB }, { size: 1 * MiB + 512, format: 'raw' }], start: false });
    cleanups.push(() => dom.destroy());
    const work = await mkdtemp(join(tmpdir(), 'pullback-helper-test-'));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    expect(dom.name.startsWith(TEST_DOMAIN_PREFIX)).toBe(true);
    expect(dom.uri).toBe('qemu:///system');
    expect(dom.disks.map((d) => [d.target, d.format, d.size])).toEqual([
      ['vda', 'qcow2', 2 * MiB],
      ['vdb', 'raw', MiB + 512],
    ]);
    expect(await dom.isRunning()).toBe(false);

    // Shut off: qemu-io on the images.
    const a = await dom.writeRandom('vda', 12_345, 100_000, 7);
    expect(a.equals(seededBytes(7, 100_000))).toBe(true);
    await dom.writeRandom('vdb', MiB + 511, 1, 8);
    await dom.write('vdb', 0, Buffer.from('hello'));
    const snap = await dom.snapshotReferences('before');
    const snapSha = { vda: await sha256File(snap['vda'] ?? ''), vdb: await sha256File(snap['vdb'] ?? '') };
    expect(snapSha.vda).toBe(await dom.referenceSha256('vda'));

    // Running: HMP qemu-io on the virtio backends.
    await dom.start();
    expect(await dom.isRunning()).toBe(true);
    await dom.writeRandom('vda', 2 * MiB - 3, 3, 9);
    await dom.writeZeroes('vda', 12_345 + 10, 50, { unmap: true });
    await dom.writeRandom('vdb', 4096, 64 * 1024, 10);
    await dom.writeZeroes('vdb', 1, 2);
    expect(await dom.referenceSha256('vda')).not.toBe(snapSha.vda);
    expect(await sha256File(snap['vda'] ?? '')).toBe(snapSha.vda); // the snapshot did not move

    await dom.shutdown();
    await dom.shutdown(); // idempotent
    for (const d of dom.disks) expect(await imageSha(d, work)).toBe(await dom.referenceSha256(d.target));
    // The reference of vdb really holds the bytes written (not just equal by accident).
    const { stdout } = await execFileP('od', ['-An', '-c', '-N', '5', dom.reference('vdb')]);
    expect(stdout.replace(/\s+/g, '')).toBe('h\\0\\0lo');

    await expect(dom.write('vda', 2 * MiB - 1, Buffer.alloc(2))).rejects.toThrow(/outside disk vda/);
    await expect(dom.write('vdz', 0, Buffer.alloc(1))).rejects.toThrow(/no disk vdz/);
    expect(() => dom.reference('vdq')).toThrow(/no disk vdq/);
  });

  it('discard: the reference zeroes exactly what qcow2 and raw images drop, shut off and running', async () => {
    const size = MiB + 512; // not a cluster multiple: the partial last cluster is a case of its own
    const dom = await createTestDomain({ disks: [{ size }, { size, format: 'raw' }], start: false });
    cleanups.push(() => dom.destroy());
    const work = await mkdtemp(join(tmpdir(), 'pullback-helper-test-'));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    for (const d of dom.disks) await dom.writeRandom(d.target, 0, size, 20);

    // Shut off (qemu-io on the image): unaligned head and tail, a range reaching the disk's end.
    for (const d of dom.disks) {
      expect(await dom.discard(d.target, 1000, 200_000)).toBe('zeroed'); // qcow2: only clusters 1-2 drop
      expect(await dom.discard(d.target, size - 70_000, 70_000)).toBe('zeroed'); // reaches the end: the partial cluster drops
    }
    await dom.start();
    expect(await dom.discard('vda', 300_000, 40_000)).toBe('nothing'); // qcow2: inside one cluster
    expect(await dom.discard('vdb', 300_000, 40_000)).toBe('zeroed');
    for (const d of dom.disks) expect(await dom.discard(d.target, 6 * 65_536, 2 * 65_536)).toBe('zeroed'); // aligned

    // While a backup job's copy-before-write filter is on the disks, QEMU drops discards.
    const sock = join(work, 'nbd.sock');
    const backupXml = buildBackupXml({
      socket: sock,
      disks: dom.disks.map((d) => ({ name: d.target, backup: true, scratch: join(work, `${d.target}.scratch`) })),
    });
    await dom.libvirt.backupBegin(dom.name, backupXml, null);
    try {
      for (const d of dom.disks) expect(await dom.discard(d.target, 10 * 65_536, 2 * 65_536)).toBe('dropped');
    } finally {
      await dom.libvirt.jobAbort(dom.name);
    }
    await dom.shutdown();
    for (const d of dom.disks) expect(await imageSha(d, work)).toBe(await dom.referenceSha256(d.target));

    // The model really differs between formats and really zeroes something.
    const zeroAt = async (target: string, offset: number): Promise<boolean> => {
      const { stdout } = await execFileP('od', ['-An', '-v', '-tx1', '-j', String(offset), '-N', '4096', dom.reference(target)]);
      return /^[\s0]*$/.test(stdout);
    };
    expect(await zeroAt('vda', 65_536)).toBe(true);
    expect(await zeroAt('vda', 4096)).toBe(false); // head of a partial cluster kept its data
    expect(await zeroAt('vdb', 4096)).toBe(true); // raw punched the exact range
    expect(await zeroAt('vda', 300_000)).toBe(false);
    expect(await zeroAt('vdb', 300_000)).toBe(true);
    expect(await zeroAt('vda', size - 4096)).toBe(true);
    expect(await zeroAt('vda', 6 * 65_536)).toBe(true);
    expect(await zeroAt('vda', 10 * 65_536)).toBe(false);
  });

  it('rejects disk sizes that are not whole sectors, leaving nothing behind', async () => {
    // Other test files define and undefine domains concurrently, so compare only this name
    // (and the image directory it would have had), not the whole domain list.
    const name = `${TEST_DOMAIN_PREFIX}badsize-${process.pid}`;
    const dirsOf = async (): Promise<string[]> => (await readdir(tmpdir())).filter((f) => f.startsWith(`${name}-`));
    await expect(createTestDomain({ name, disks: [{ size: 1000 }] })).rejects.toThrow(/multiple of 512/);
    expect(await lv.listDomains()).not.toContain(name);
    expect(await dirsOf()).toEqual([]);
  });

  it('destroy is idempotent, and a failed create never touches a same-named domain', async () => {
    const dom = await createTestDomain({ disks: 1, diskSize: MiB, start: false });
    cleanups.push(() => dom.destroy());
    await expect(createTestDomain({ name: dom.name, disks: 1, diskSize: MiB })).rejects.toThrow(/already exists/);
    expect(await lv.domainState(dom.name)).toBe('shut off'); // the original survived
    expect(existsSync(dom.disks[0]?.path ?? '')).toBe(true);

    await dom.start();
    await dom.destroy();
    await dom.destroy();
    expect(await lv.listDomains()).not.toContain(dom.name);
    expect(existsSync(dom.dir)).toBe(false);
  });
});

describe('cleanupStaleTestDomains', () => {
  it('removes domains and directories of dead processes only', async () => {
    const live = await createTestDomain({ disks: 1, diskSize: MiB, start: false });
    cleanups.push(() => live.destroy());

    const pid = await deadPid();
    const staleName = `${TEST_DOMAIN_PREFIX}stale-${pid}`;
    const staleDir = await mkdtemp(join(tmpdir(), `${staleName}-`));
    cleanups.push(() => rm(staleDir, { recursive: true, force: true }));
    const xml = serializeXml(
      {
        prolog: [],
        root: el('domain', { type: 'qemu' }, [
          el('name', {}, staleName),
          el('description', {}, `pullback-test-domain pid=${pid} dir=${staleDir} owns-dir=yes`),
          el('memory', { unit: 'MiB' }, '64'),
          el('os', {}, [el('type', { arch: 'x86_64', machine: 'q35' }, 'hvm')]),
        ]),
      },
      { indent: true },
    );
    await lv.define(xml);
    cleanups.push(() => lv.undefine(staleName));

    const orphanDir = await mkdtemp(join(tmpdir(), `${TEST_DOMAIN_PREFIX}orphan-`));
    cleanups.push(() => rm(orphanDir, { recursive: true, force: true }));
    await writeFile(join(orphanDir, 'x.owner.json'), JSON.stringify({ pid, name: 'x' }));

    await cleanupStaleTestDomains();

    const names = await lv.listDomains();
    expect(names).not.toContain(staleName);
    expect(existsSync(staleDir)).toBe(false);
    expect(existsSync(orphanDir)).toBe(false);
    expect(names).toContain(live.name); // our own process is alive: untouched
    expect(existsSync(live.dir)).toBe(true);
  });
});
