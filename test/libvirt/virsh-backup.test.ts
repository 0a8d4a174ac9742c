// Integration: VirshLibvirt + the XML builders/parsers against this machine's libvirt, on a
// throwaway 2-disk domain. A real full pull-mode backup with a checkpoint is read with nbdcopy
// and compared with the helper's references; an incremental one proves guest writes reach
// the dirty bitmap; checkpoints go through list/dumpxml/delete/redefine; errors map to codes.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPullbackError } from '../../src/errors.js';
import { buildBackupXml, parseBackupXml } from '../../src/libvirt/backup-xml.js';
import { buildCheckpointXml, parseCheckpointXml } from '../../src/libvirt/checkpoint-xml.js';
import { parseDomainXml } from '../../src/libvirt/domain-xml.js';
import { transformDomainForRestore } from '../../src/libvirt/restore-xml.js';
import { VirshLibvirt } from '../../src/libvirt/virsh.js';
import { createTestDomain, sha256File } from '../helpers/domain.js';
import type { TestDomain } from '../helpers/domain.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;
const GRANULE = 64 * 1024; // qcow2 cluster = default bitmap granularity

let dom: TestDomain;
let work: string;
const lv = new VirshLibvirt();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullback-virsh-test-'));
  // vdb's size is a multiple of 512 but not of the 64 KiB cluster: its last byte must work too.
  dom = await createTestDomain({ disks: [{ size: 8 * MiB }, { size: 3 * MiB + 512 }] });
});

afterAll(async () => {
  await dom?.destroy();
  await rm(work, { recursive: true, force: true });
});

/** Catches the rejection of `p` (which must reject) for inspection. */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

function backupXml(sock: string, incremental?: string): string {
  return buildBackupXml({
    ...(incremental === undefined ? {} : { incremental }),
    socket: sock,
    disks: dom.disks.map((d) => ({ name: d.target, backup: true as const, scratch: join(work, `${d.target}.${Date.now()}.scratch`) })),
  });
}

function checkpointXml(name: string): string {
  return buildCheckpointXml({ name, description: `test ${name}`, disks: dom.disks.map((d) => ({ name: d.target, checkpoint: true })) });
}

/** nbdinfo --map of a meta context, as [offset, length, type] triples. */
async function nbdMap(uri: string, context: string): Promise<Array<[number, number, number]>> {
  const { stdout } = await execFileP('nbdinfo', [`--map=${context}`, uri]);
  return stdout
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .map(([o, n, t]) => [Number(o), Number(n), Number(t)]);
}

describe('VirshLibvirt on a live domain', () => {
  it('answers version, state, list and dumpxml', async () => {
    const v = await lv.version();
    expect(v.library).toMatch(/^\d+\.\d+\.\d+$/);
    expect(v.hypervisor?.name).toBe('QEMU');
    await lv.ping();
    expect(await lv.domainState(dom.name)).toBe('paused'); // test domains run paused (helpers/domain.ts)
    expect(await lv.listDomains()).toContain(dom.name);
    const live = parseDomainXml(await lv.dumpXml(dom.name));
    expect(live.id).not.toBeNull();
    expect(live.disks.map((d) => [d.target, d.alias, d.source, d.incrementalCapable])).toEqual([
      ['vda', 'virtio-disk0', dom.disks[0]?.path, true],
      ['vdb', 'virtio-disk1', dom.disks[1]?.path, true],
    ]);
    expect(parseDomainXml(await lv.dumpXml(dom.name, { inactive: true })).id).toBeNull();
  });

  it('prefetch: one virsh process gives each call the same answer it gets on its own, failures included', async () => {
    const direct = new VirshLibvirt();
    const want = {
      version: await direct.version(),
      state: await direct.domainState(dom.name),
      xml: await direct.dumpXml(dom.name),
      inactive: await direct.dumpXml(dom.name, { inactive: true }),
      job: await direct.jobInfo(dom.name),
      checkpoints: await direct.checkpointList(dom.name),
      vdb: await direct.blockCapacity(dom.name, 'vdb'),
    };
    const missing = await rejection(direct.blockCapacity(dom.name, 'vdz'));
    const batched = new VirshLibvirt({ session: false });
    const queries = ['version', 'state', 'xml', 'inactiveXml', 'job', 'checkpoints', { capacity: 'vdb' }, { capacity: 'vdz' }] as const;
    await batched.prefetch(dom.name, queries);
    // A virsh that is not there: were the calls below not answered from the prefetch, they would fail.
    (batched as unknown as { virsh: string }).virsh = '/nonexistent/virsh';
    expect(await batched.version()).toEqual(want.version);
    expect(await batched.domainState(dom.name)).toBe(want.state);
    expect((await batched.dumpXml(dom.name)).trim()).toBe(want.xml.trim());
    expect((await batched.dumpXml(dom.name, { inactive: true })).trim()).toBe(want.inactive.trim());
    expect(await batched.jobInfo(dom.name)).toEqual(want.job);
    expect(await batched.checkpointList(dom.name)).toEqual(want.checkpoints);
    expect(await batched.blockCapacity(dom.name, 'vdb')).toBe(want.vdb);
    const err = await rejection(batched.blockCapacity(dom.name, 'vdz'));
    expect(err.code).toBe(missing.code);
    expect(err.message).toBe(missing.message);
    // Each answer is used once: the second ask goes to (the missing) virsh.
    expect((await rejection(batched.domainState(dom.name))).code).toBe('LIBVIRT_UNAVAILABLE');
    // A prefetch that virsh cannot run caches nothing, and says nothing.
    await batched.prefetch(dom.name, ['state']);
    expect((await rejection(batched.domainState(dom.name))).code).toBe('LIBVIRT_UNAVAILABLE');
  });

  it('session: one long-lived virsh answers like a virsh per call, concurrent calls included, and comes back after being killed', async () => {
    const plain = new VirshLibvirt({ session: false });
    const s = new VirshLibvirt({ session: true });
    try {
      expect(await s.domainState(dom.name)).toBe(await plain.domainState(dom.name));
      expect((await s.dumpXml(dom.name)).trim()).toBe((await plain.dumpXml(dom.name)).trim());
      expect(await s.blockCapacity(dom.name, 'vdb')).toBe(await plain.blockCapacity(dom.name, 'vdb'));
      const [a, b] = await Promise.all([s.checkpointList(dom.name), s.jobInfo(dom.name)]);
      expect(a).toEqual(await plain.checkpointList(dom.name));
      expect(b).toEqual(await plain.jobInfo(dom.name));
      const missing = await rejection(plain.domainState('pbtest-no-such-domain'));
      const viaSession = await rejection(s.domainState('pbtest-no-such-domain'));
      expect(viaSession.code).toBe('DOMAIN_NOT_FOUND');
      expect(viaSession.message).toBe(missing.message);
      // Kill the session's virsh behind its back (only this process's children: other test
      // files run beside this one): the next call starts a new one.
      const pids = (await execFileP('pgrep', ['-P', String(process.pid), '-f', `^virsh -q -c ${lv.uri}$`])).stdout.trim().split('\n');
      for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      expect(await s.domainState(dom.name)).toBe('paused');
    } finally {
      s.close();
    }
  });

  it('prefetch: a call that changes something drops every prefetched answer', async () => {
    const lv2 = new VirshLibvirt();
    await lv2.prefetch(dom.name, ['checkpoints', 'state']);
    const name = `cp-prefetch-${Date.now()}`;
    await lv2.checkpointCreate(dom.name, checkpointXml(name));
    try {
      expect(await lv2.checkpointList(dom.name)).toContain(name);
    } finally {
      await lv2.checkpointDelete(dom.name, name);
    }
  });

  it('deleteCheckpoints: one virsh process, an error per failed step, the rest done', async () => {
    const a = `cp-end-a-${Date.now()}`;
    const b = `cp-end-b-${Date.now()}`;
    await lv.checkpointCreate(dom.name, checkpointXml(a));
    await lv.checkpointCreate(dom.name, checkpointXml(b));
    const r = await lv.deleteCheckpoints(dom.name, [a, 'no-such-checkpoint', b]);
    expect(r.map((e) => e?.code ?? null)).toEqual([null, 'CHECKPOINT_NOT_FOUND', null]);
    expect(r[1]?.message).toContain("checkpoint-delete --domain");
    expect(await lv.deleteCheckpoints(dom.name, [])).toEqual([]);
    const left = await lv.checkpointList(dom.name);
    expect(left).not.toContain(a);
    expect(left).not.toContain(b);
  });

  it('full pull backup with checkpoint: nbdcopy of each export matches the reference', async () => {
    await dom.writeRandom('vda', 1, 200_000, 1); // unaligned start and length
    await dom.writeRandom('vda', 8 * MiB - 1, 1, 2); // last byte
    await dom.writeRandom('vdb', 3 * MiB + 512 - 777, 777, 3); // tail of the odd-sized disk
    await dom.writeRandom('vdb', 100_000, 300_000, 4);
    await dom.writeZeroes('vdb', 150_001, 100_000, { unmap: true });
    await dom.writeZeroes('vda', 50_000, 10_000);

    const sock = join(work, 'full.sock');
    await lv.backupBegin(dom.name, backupXml(sock), checkpointXml('cp0'));
    let raw: Promise<Error & { code?: string }> | undefined;
    try {
      const job = await lv.jobInfo(dom.name);
      expect(job).toMatchObject({ type: 'Unbounded', active: true, operation: 'Backup' });
      const info = parseBackupXml(await lv.backupDumpXml(dom.name));
      expect(info.server?.socket).toBe(sock);
      expect(info.disks.map((d) => [d.name, d.exportName, d.exportBitmap, d.backupMode])).toEqual([
        ['vda', 'vda', null, 'full'],
        ['vdb', 'vdb', null, 'full'],
      ]);

      // While the job runs, a second backup-begin must fail DOMAIN_BUSY: fast through our
      // job check, and (raw, no check) after libvirt's own 30 s wait for its lock.
      const fast = Date.now();
      const busy = await rejection(lv.backupBegin(dom.name, backupXml(join(work, 'b.sock')), null));
      expect(busy.code).toBe('DOMAIN_BUSY');
      expect(busy.message).toMatch(/already has an active Backup job/);
      expect(Date.now() - fast).toBeLessThan(5_000);
      raw = rejection(lv.backupBegin(dom.name, backupXml(join(work, 'c.sock')), null, { checkActiveJob: false }));

      for (const d of dom.disks) {
        const out = join(work, `full-${d.target}.raw`);
        await execFileP('nbdcopy', [`nbd+unix:///${d.target}?socket=${sock}`, out]);
        expect(await sha256File(out)).toBe(await dom.referenceSha256(d.target));
      }
      const lockErr = await raw;
      expect(lockErr.code).toBe('DOMAIN_BUSY');
      expect(lockErr.message).toMatch(/virsh .*backup-begin .*cannot acquire state change lock/);
    } finally {
      // Let the waiting backup-begin fail first, or it could take the lock once we abort.
      await raw?.catch(() => undefined);
      await lv.jobAbort(dom.name);
    }
    // domjobabort returns once QEMU was asked to cancel; the job ends a moment later.
    const until = Date.now() + 10_000;
    while ((await lv.jobInfo(dom.name)).active && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect((await lv.jobInfo(dom.name)).active).toBe(false);
    expect(await lv.jobInfo(dom.name, { completed: true })).toMatchObject({ operation: 'Backup', errorMessage: 'Operation canceled' });
    expect(await lv.checkpointList(dom.name)).toEqual(['cp0']);
  }, 120_000);

  it('incremental backup: the dirty bitmap holds exactly the granules of guest writes since cp0', async () => {
    const writes: Array<[number, number]> = [
      [1 * MiB + 100, 5_000], // inside one granule
      [3 * MiB - 10, 20], // straddles a granule boundary
    ];
    for (const [o, n] of writes) await dom.writeRandom('vda', o, n);
    await dom.writeZeroes('vda', 6 * MiB, GRANULE * 2); // exactly two granules
    const sock = join(work, 'inc.sock');
    await lv.backupBegin(dom.name, backupXml(sock, 'cp0'), checkpointXml('cp1'));
    try {
      const info = parseBackupXml(await lv.backupDumpXml(dom.name));
      const vda = info.disks.find((d) => d.name === 'vda');
      expect(vda).toMatchObject({ backupMode: 'incremental', incremental: 'cp0', exportBitmap: 'backup-vda' });
      const uri = `nbd+unix:///vda?socket=${sock}`;
      const dirty = (await nbdMap(uri, `qemu:dirty-bitmap:${vda?.exportBitmap}`)).filter(([, , t]) => t === 1);
      const granules = new Set<number>();
      for (const [o, n] of [...writes, [6 * MiB, GRANULE * 2] as [number, number]]) {
        for (let g = Math.floor(o / GRANULE); g * GRANULE < o + n; g++) granules.add(g * GRANULE);
      }
      const dirtyGranules = new Set<number>();
      for (const [o, n] of dirty) for (let g = o; g < o + n; g += GRANULE) dirtyGranules.add(g);
      expect([...dirtyGranules].sort((a, b) => a - b)).toEqual([...granules].sort((a, b) => a - b));
      // vdb saw no writes since cp0: its bitmap is all clean.
      const vdbMap = await nbdMap(`nbd+unix:///vdb?socket=${sock}`, 'qemu:dirty-bitmap:backup-vdb');
      expect(vdbMap.filter(([, , t]) => t === 1)).toEqual([]);
      // And the export is still the whole point-in-time disk.
      const out = join(work, 'inc-vda.raw');
      await execFileP('nbdcopy', [uri, out]);
      expect(await sha256File(out)).toBe(await dom.referenceSha256('vda'));
    } finally {
      await lv.jobAbort(dom.name);
    }
  }, 60_000);

  it('checkpoints: list, dumpxml, delete --metadata, redefine, delete', async () => {
    expect(await lv.checkpointList(dom.name)).toEqual(['cp0', 'cp1']);
    const cp1 = parseCheckpointXml(await lv.checkpointDumpXml(dom.name, 'cp1', { noDomain: true, size: true }));
    expect(cp1).toMatchObject({ name: 'cp1', parent: 'cp0', description: 'test cp1', hasDomain: false });
    expect(cp1.disks.map((d) => [d.name, d.checkpoint, d.bitmap])).toEqual([
      ['vda', 'bitmap', 'cp1'],
      ['vdb', 'bitmap', 'cp1'],
    ]);
    const saved = await lv.checkpointDumpXml(dom.name, 'cp1');
    expect(parseCheckpointXml(saved).hasDomain).toBe(true);

    const bitmaps = async (): Promise<string[]> => {
      const out = JSON.parse(await lv.monitorCommand(dom.name, '{"execute":"query-block"}')) as {
        return: Array<{ qdev?: string; inserted?: { 'dirty-bitmaps'?: Array<{ name: string }> } }>;
      };
      const vda = out.return.find((b) => b.qdev?.includes('virtio-disk0'));
      return (vda?.inserted?.['dirty-bitmaps'] ?? []).map((b) => b.name).sort();
    };
    expect(await bitmaps()).toEqual(['cp0', 'cp1']);

    await lv.checkpointDelete(dom.name, 'cp1', { metadataOnly: true });
    expect(await lv.checkpointList(dom.name)).toEqual(['cp0']);
    expect(await bitmaps()).toEqual(['cp0', 'cp1']); // metadata only: the bitmap stays
    await lv.checkpointCreate(dom.name, saved, { redefine: true });
    expect(await lv.checkpointList(dom.name)).toEqual(['cp0', 'cp1']);
    expect(parseCheckpointXml(await lv.checkpointDumpXml(dom.name, 'cp1', { noDomain: true })).parent).toBe('cp0');

    await lv.checkpointDelete(dom.name, 'cp1');
    expect(await lv.checkpointList(dom.name)).toEqual(['cp0']);
    expect(await bitmaps()).toEqual(['cp0']);
    const missing = await rejection(lv.checkpointDumpXml(dom.name, 'cp1'));
    expect(missing.code).toBe('CHECKPOINT_NOT_FOUND');
    expect(await lv.monitorCommand(dom.name, 'info status', { hmp: true })).toMatch(/VM status: paused/);
  });

  it('maps failures to stable codes with the virsh command and its error line', async () => {
    const nf = await rejection(lv.domainState('pbtest-no-such-domain'));
    expect(nf.code).toBe('DOMAIN_NOT_FOUND');
    expect(nf.message).toMatch(/virsh -q -c qemu:\/\/\/system domstate --domain pbtest-no-such-domain failed: failed to get domain 'pbtest-no-such-domain'/);
    expect((await rejection(lv.dumpXml('pbtest-no-such-domain'))).code).toBe('DOMAIN_NOT_FOUND');

    const bogus = new VirshLibvirt({ uri: 'qemu+unix:///system?socket=/nonexistent' });
    const un = await rejection(bogus.ping());
    expect(un.code).toBe('LIBVIRT_UNAVAILABLE');
    expect(un.message).toMatch(/Failed to connect socket to '\/nonexistent'/);
    expect(un.message).toContain("'qemu+unix:///system?socket=/nonexistent'");

    expect((await rejection(lv.jobAbort(dom.name))).code).toBe('JOB_NOT_ACTIVE');
    expect((await rejection(lv.backupDumpXml(dom.name))).code).toBe('JOB_NOT_ACTIVE');

    const ac = new AbortController();
    const p = lv.monitorCommand(dom.name, 'info status', { hmp: true, signal: ac.signal });
    ac.abort();
    expect((await rejection(p)).code).toBe('ABORTED');
    // A virsh that never answers (libvirtd hung): a real one may answer within any timeout
    // short enough for a test, through the session or a fresh process alike.
    const hung = join(work, 'hung-virsh');
    await writeFile(hung, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    for (const session of [true, false]) {
      const slow = new VirshLibvirt({ virsh: hung, session });
      const t0 = Date.now();
      const to = await rejection(slow.version({ timeoutMs: 200 }));
      slow.close();
      expect(to.code).toBe('LIBVIRT_TIMEOUT');
      expect(to.message).toMatch(/no answer within 200 ms; is libvirtd at qemu:\/\/\/system hung or overloaded\?/);
      expect(Date.now() - t0).toBeLessThan(10_000);
    }

    const env = { ...process.env };
    try {
      process.env['LIBVIRT_DEFAULT_URI'] = 'qemu+unix:///system?socket=/nonexistent';
      expect(new VirshLibvirt().uri).toBe('qemu+unix:///system?socket=/nonexistent');
      expect(new VirshLibvirt({ uri: 'qemu:///system' }).uri).toBe('qemu:///system');
    } finally {
      process.env['LIBVIRT_DEFAULT_URI'] = env['LIBVIRT_DEFAULT_URI'];
      if (env['LIBVIRT_DEFAULT_URI'] === undefined) delete process.env['LIBVIRT_DEFAULT_URI'];
    }
  });

  it('offline: writes to a shut-off domain land in the images; backup-begin says not running', async () => {
    await dom.shutdown();
    expect(await dom.isRunning()).toBe(false);
    expect(await lv.domainState(dom.name)).toBe('shut off');
    expect((await lv.jobInfo(dom.name)).active).toBe(false);
    await dom.writeRandom('vda', 2 * MiB + 3, 70_000, 9);
    await dom.writeZeroes('vdb', 0, 4096);
    for (const d of dom.disks) {
      const out = join(work, `offline-${d.target}.raw`);
      await execFileP('qemu-img', ['convert', '-f', d.format, '-O', 'raw', d.path, out]);
      expect(await sha256File(out)).toBe(await dom.referenceSha256(d.target));
    }
    const e = await rejection(lv.backupBegin(dom.name, backupXml(join(work, 'off.sock')), null));
    expect(e.code).toBe('DOMAIN_NOT_RUNNING');
    expect((await rejection(lv.destroy(dom.name))).code).toBe('DOMAIN_NOT_RUNNING');
    await dom.start();
    expect(await dom.isRunning()).toBe(true);
  });

  it('a restore-transformed copy of the domain defines cleanly as a new domain', async () => {
    const newName = `${dom.name}-restored`;
    const xml = transformDomainForRestore(await lv.dumpXml(dom.name, { inactive: true }), {
      name: newName,
      disks: { vda: { path: join(work, 'r-vda.qcow2'), format: 'qcow2' }, vdb: { path: join(work, 'r-vdb.raw'), format: 'raw' } },
    });
    try {
      await lv.define(xml);
      const back = parseDomainXml(await lv.dumpXml(newName, { inactive: true }));
      const orig = parseDomainXml(await lv.dumpXml(dom.name, { inactive: true }));
      expect(back.name).toBe(newName);
      expect(back.uuid).not.toBe(orig.uuid);
      expect(back.disks.map((d) => [d.target, d.source, d.driverType])).toEqual([
        ['vda', join(work, 'r-vda.qcow2'), 'qcow2'],
        ['vdb', join(work, 'r-vdb.raw'), 'raw'],
      ]);
      expect(await lv.domainState(newName)).toBe('shut off');
    } finally {
      await lv.undefine(newName).catch((e: unknown) => {
        if (!isPullbackError(e, 'DOMAIN_NOT_FOUND')) throw e;
      });
    }
  });
});
