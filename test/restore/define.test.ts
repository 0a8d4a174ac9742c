// `pullback restore --define NEWNAME` against real libvirt: the new domain starts on the
// restored images, has its own name, UUID and MAC, and the original domain is untouched;
// a NEWNAME that exists is refused before anything is written.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isPullbackError } from '../../src/errors.js';
import { parseDomainXml } from '../../src/libvirt/domain-xml.js';
import { VirshLibvirt } from '../../src/libvirt/virsh.js';
import type { Repository } from '../../src/store/index.js';
import { createTestDomain, TEST_DOMAIN_PREFIX, type TestDomain } from '../helpers/domain.js';
import { KiB, MiB, quietInit, tempDir } from '../store/helpers.js';
import { buildChain, sha256, type ChainStep } from './chain.js';
import { cli } from './cli-run.js';

const run = promisify(execFile);
const libvirt = new VirshLibvirt();
const MAC = '52:54:00:12:34:56';

let t: ReturnType<typeof tempDir>;
let repo: Repository;
let dom: TestDomain;
let originalXml: string;
let last: ChainStep;
const newName = `${TEST_DOMAIN_PREFIX}restored-${randomBytes(4).toString('hex')}`;

async function removeDomain(name: string): Promise<void> {
  await libvirt.destroy(name).catch(() => undefined);
  await libvirt.undefine(name).catch((e: unknown) => {
    if (!isPullbackError(e, 'DOMAIN_NOT_FOUND')) throw e;
  });
}

beforeAll(async () => {
  t = tempDir('pullback-restore-define-');
  dom = await createTestDomain({ disks: 2, diskSize: 4 * MiB, start: false });
  originalXml = await libvirt.dumpXml(dom.name, { inactive: true });
  // The backed-up XML also has a NIC with a fixed MAC, which the new domain must not reuse.
  const backedUpXml = originalXml.replace('</devices>', `<interface type='user'><mac address='${MAC}'/><model type='virtio'/></interface></devices>`);
  repo = await quietInit(join(t.dir, 'repo'), { chunkSize: 64 * KiB });
  const steps = await buildChain(repo, {
    domain: dom.name,
    disks: dom.disks.map((d) => ({ name: d.target, size: d.size })),
    incrementals: 2,
    seed: 31,
    domainXml: backedUpXml,
  });
  last = steps[steps.length - 1] as ChainStep;
});
afterAll(async () => {
  await removeDomain(newName);
  await dom?.destroy();
  await repo?.close();
  t?.cleanup();
});

describe('restore --define', () => {
  test('defines a new domain on the restored images that starts; the original is untouched', async () => {
    const out = join(t.dir, 'images');
    const r = await cli(['restore', '--repo', repo.dir, '--domain', dom.name, '--output', out, '--format', 'qcow2', '--define', newName, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = (JSON.parse(r.stdout) as { restore: { defined: string; disks: Array<{ name: string; path: string }> } }).restore;
    expect(summary.defined).toBe(newName);

    const xml = await libvirt.dumpXml(newName, { inactive: true });
    const info = parseDomainXml(xml);
    const orig = parseDomainXml(originalXml);
    expect(info.name).toBe(newName);
    expect(info.uuid).not.toBeNull();
    expect(info.uuid).not.toBe(orig.uuid);
    const mac = /<mac address='([^']+)'/.exec(xml)?.[1];
    expect(mac).toBeDefined();
    expect(mac).not.toBe(MAC);
    expect(info.disks.map((d) => [d.target, d.source, d.driverType])).toEqual([
      ['vda', join(out, 'vda.qcow2'), 'qcow2'],
      ['vdb', join(out, 'vdb.qcow2'), 'qcow2'],
    ]);

    await libvirt.start(newName);
    expect(await libvirt.domainState(newName)).toBe('running');
    await libvirt.destroy(newName);

    // The images the domain ran on still hold the backup's content (QEMU opened them as qcow2).
    for (const d of ['vda', 'vdb']) {
      const raw = join(t.dir, `${d}.check.raw`);
      await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', join(out, `${d}.qcow2`), raw]);
      expect(sha256(readFileSync(raw))).toBe(sha256(last.images[d] as Buffer));
    }
    // The original domain: same definition, still there.
    expect(await libvirt.dumpXml(dom.name, { inactive: true })).toBe(originalXml);
  });

  test('an existing NEWNAME is refused before anything is written', async () => {
    const out = join(t.dir, 'never');
    const r = await cli(['restore', '--repo', repo.dir, '--domain', dom.name, '--output', out, '--define', dom.name]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^pullback: error \\[OUTPUT_EXISTS\\]: a domain named ${dom.name} already exists.*\\n$`));
    expect(existsSync(out)).toBe(false);
    expect(await libvirt.dumpXml(dom.name, { inactive: true })).toBe(originalXml);
  });
});
