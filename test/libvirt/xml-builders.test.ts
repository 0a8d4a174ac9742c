// Golden-file tests for the pure XML builders: output must equal fixtures/libvirt/*.golden.xml
// byte for byte, and must parse back to what was asked for.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildBackupXml, parseBackupXml } from '../../src/libvirt/backup-xml.js';
import { buildCheckpointXml, parseCheckpointXml } from '../../src/libvirt/checkpoint-xml.js';
import { isPullbackError } from '../../src/errors.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/libvirt/${name}`, import.meta.url), 'utf8');

describe('buildBackupXml', () => {
  it('builds a full pull-mode backup (golden)', () => {
    const xml = buildBackupXml({
      socket: '/run/pullback/vm1/nbd.sock',
      disks: [
        { name: 'vda', backup: true, scratch: '/run/pullback/vm1/vda.scratch' },
        { name: 'vdb', backup: true, scratch: '/run/pullback/vm1/vdb.scratch' },
        { name: 'sda', backup: false },
      ],
    });
    expect(xml).toBe(fixture('backup-full.golden.xml'));
    const parsed = parseBackupXml(xml);
    expect(parsed.mode).toBe('pull');
    expect(parsed.incremental).toBeNull();
    expect(parsed.server).toEqual({ transport: 'unix', socket: '/run/pullback/vm1/nbd.sock', name: null, port: null });
    expect(parsed.disks.map((d) => [d.name, d.backup, d.scratch])).toEqual([
      ['vda', true, '/run/pullback/vm1/vda.scratch'],
      ['vdb', true, '/run/pullback/vm1/vdb.scratch'],
      ['sda', false, null],
    ]);
  });

  it('builds an incremental backup with a per-disk full override, escaping text (golden)', () => {
    const xml = buildBackupXml({
      incremental: 'pb-2024 & <x>',
      socket: '/run/pullback/vm1/nbd.sock',
      disks: [
        { name: 'vda', backup: true, scratch: '/run/pullback/vm1/vda.scratch' },
        { name: 'vdb', backup: true, scratch: '/run/pullback/vm1/vdb.scratch', backupMode: 'full' },
        { name: 'sda', backup: false },
      ],
    });
    expect(xml).toBe(fixture('backup-incremental.golden.xml'));
    const parsed = parseBackupXml(xml);
    expect(parsed.incremental).toBe('pb-2024 & <x>');
    expect(parsed.disks[1]?.backupMode).toBe('full');
    expect(parsed.disks[0]?.backupMode).toBeNull();
  });

  it('names the export and the exported bitmap when asked, and parses them back', () => {
    const xml = buildBackupXml({
      incremental: 'cp1',
      socket: '/run/pullback/vm1/nbd.sock',
      disks: [
        { name: 'vda', backup: true, scratch: '/s/vda', exportName: 'vda', exportBitmap: 'backup-vda' },
        { name: 'vdb', backup: true, scratch: '/s/vdb', backupMode: 'full', exportName: 'vdb' },
      ],
    });
    expect(xml).toContain(`exportname="vda" exportbitmap="backup-vda"`);
    const parsed = parseBackupXml(xml);
    expect(parsed.disks.map((d) => [d.name, d.exportName, d.exportBitmap])).toEqual([
      ['vda', 'vda', 'backup-vda'],
      ['vdb', 'vdb', null],
    ]);
  });

  it('rejects relative paths and backups of no disk', () => {
    const bad = [
      () => buildBackupXml({ socket: 'nbd.sock', disks: [{ name: 'vda', backup: true, scratch: '/s' }] }),
      () => buildBackupXml({ socket: '/nbd.sock', disks: [{ name: 'vda', backup: true, scratch: 's' }] }),
      () => buildBackupXml({ socket: '/nbd.sock', disks: [{ name: 'vda', backup: false }] }),
    ];
    for (const f of bad) expect(() => f()).toThrow(expect.objectContaining({ code: 'XML_INVALID' }));
  });
});

describe('buildCheckpointXml', () => {
  it('builds a checkpoint with description and an excluded disk (golden)', () => {
    const xml = buildCheckpointXml({
      name: 'pb-1',
      description: 'pullback "daily" & more',
      disks: [
        { name: 'vda', checkpoint: true },
        { name: 'vdb', checkpoint: false },
      ],
    });
    expect(xml).toBe(fixture('checkpoint.golden.xml'));
    const parsed = parseCheckpointXml(xml);
    expect(parsed).toEqual({
      name: 'pb-1',
      description: 'pullback "daily" & more',
      parent: null,
      creationTime: null,
      disks: [
        { name: 'vda', checkpoint: 'bitmap', bitmap: null, size: null },
        { name: 'vdb', checkpoint: 'no', bitmap: null, size: null },
      ],
      hasDomain: false,
    });
  });

  it('omits the description when none is given (golden)', () => {
    expect(buildCheckpointXml({ name: 'pb-2', disks: [{ name: 'vda', checkpoint: true }] })).toBe(
      fixture('checkpoint-minimal.golden.xml'),
    );
  });

  it('rejects an empty name', () => {
    let caught: unknown;
    try {
      buildCheckpointXml({ name: '', disks: [] });
    } catch (e) {
      caught = e;
    }
    expect(isPullbackError(caught, 'XML_INVALID')).toBe(true);
  });
});
