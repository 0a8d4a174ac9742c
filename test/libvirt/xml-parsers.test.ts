// Parser tests on XML and text captured from this machine's libvirt 9.0 / QEMU 7.2
// (fixtures/libvirt/capture.sh). Values such as UUIDs and times are the captured ones:
// re-capturing changes them, and these expectations with them.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseBackupXml } from '../../src/libvirt/backup-xml.js';
import { parseCheckpointXml } from '../../src/libvirt/checkpoint-xml.js';
import { parseDomainXml } from '../../src/libvirt/domain-xml.js';
import { parseDomState, parseJobInfo, parseNameList, parseVersion } from '../../src/libvirt/virsh-output.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/libvirt/${name}`, import.meta.url), 'utf8');

describe('parseDomainXml', () => {
  it('reads a running domain: ids, aliases, qcow2 and raw file disks', () => {
    const d = parseDomainXml(fixture('domain-live.xml'));
    expect(d.name).toBe('pbfix-capture');
    expect(d.uuid).toBe('9018f91e-73c3-4fb8-a805-d4c750fd677c');
    expect(d.type).toBe('kvm');
    expect(d.id).toBe(4);
    expect(d.disks).toEqual([
      {
        target: 'vda',
        bus: 'virtio',
        device: 'disk',
        sourceType: 'file',
        source: '/tmp/pullback-fixture/vda.qcow2',
        driverType: 'qcow2',
        readonly: false,
        shareable: false,
        hasBackingStore: false,
        alias: 'virtio-disk0',
        backupable: true,
        incrementalCapable: true,
      },
      {
        target: 'vdb',
        bus: 'virtio',
        device: 'disk',
        sourceType: 'file',
        source: '/tmp/pullback-fixture/vdb.raw',
        driverType: 'raw',
        readonly: false,
        shareable: false,
        hasBackingStore: false,
        alias: 'virtio-disk1',
        backupable: true,
        incrementalCapable: false,
      },
    ]);
  });

  it('reads an inactive domain: no id, no aliases', () => {
    const d = parseDomainXml(fixture('domain-inactive.xml'));
    expect(d.id).toBeNull();
    expect(d.disks.map((x) => x.alias)).toEqual([null, null]);
    expect(d.disks.map((x) => x.target)).toEqual(['vda', 'vdb']);
  });

  it('classifies every kind of disk of the rich domain', () => {
    const d = parseDomainXml(fixture('domain-rich-inactive.xml'));
    expect(d.name).toBe('pbfix-rich');
    const row = (t: string) => {
      const x = d.disks.find((k) => k.target === t);
      if (x === undefined) throw new Error(`no disk ${t}`);
      return [x.device, x.sourceType, x.source, x.driverType, x.readonly, x.backupable, x.incrementalCapable];
    };
    expect(d.disks.map((x) => x.target)).toEqual(['vda', 'vdb', 'vdc', 'vdd', 'vde', 'vdf', 'sda', 'sdb', 'fda', 'sdc']);
    expect(row('vda')).toEqual(['disk', 'file', '/var/lib/libvirt/images/rich-os.qcow2', 'qcow2', false, true, true]);
    expect(row('vdb')).toEqual(['disk', 'file', '/var/lib/libvirt/images/rich-data.raw', 'raw', false, true, false]);
    expect(row('vdc')).toEqual(['disk', 'block', '/dev/vg0/rich-lv', 'qcow2', false, true, true]);
    expect(row('vdd')).toEqual(['disk', 'network', 'nbd:export1', 'raw', false, true, false]);
    expect(row('vde')).toEqual(['disk', 'volume', 'default/rich-vol.qcow2', 'qcow2', false, true, false]);
    expect(row('vdf')).toEqual(['disk', 'file', '/var/lib/libvirt/images/shared.raw', 'raw', true, false, false]);
    expect(row('sda')).toEqual(['cdrom', 'file', '/var/lib/libvirt/images/install.iso', 'raw', true, false, false]);
    expect(row('sdb')).toEqual(['cdrom', 'file', null, 'raw', true, false, false]);
    expect(row('fda')).toEqual(['floppy', 'file', '/var/lib/libvirt/images/floppy.img', 'raw', false, false, false]);
    expect(row('sdc')).toEqual(['lun', 'block', '/dev/sdz', 'raw', false, true, false]);
    expect(d.disks.find((x) => x.target === 'vda')?.hasBackingStore).toBe(true);
    expect(d.disks.find((x) => x.target === 'vdf')?.shareable).toBe(true);
    expect(d.disks.find((x) => x.target === 'vda')?.bus).toBe('virtio');
    expect(d.disks.find((x) => x.target === 'sdc')?.bus).toBe('scsi');
  });

  it('rejects malformed XML and other documents with XML_INVALID', () => {
    expect(() => parseDomainXml('<domain><name>x</name>')).toThrow(expect.objectContaining({ code: 'XML_INVALID' }));
    expect(() => parseDomainXml(fixture('backup-full.xml'))).toThrow(/expected a <domain> document, got <domainbackup>/);
    expect(() => parseDomainXml('<domain type="kvm"></domain>')).toThrow(/no <name>/);
  });
});

describe('parseBackupXml (backup-dumpxml of real jobs)', () => {
  it('reads a full job: export names, no bitmaps', () => {
    const b = parseBackupXml(fixture('backup-full.xml'));
    expect(b.mode).toBe('pull');
    expect(b.incremental).toBeNull();
    expect(b.server).toEqual({ transport: 'unix', socket: '/tmp/pullback-fixture/nbd.sock', name: null, port: null });
    expect(b.disks).toEqual([
      {
        name: 'vda',
        backup: true,
        backupMode: 'full',
        incremental: null,
        exportName: 'vda',
        exportBitmap: null,
        scratch: '/tmp/pullback-fixture/vda.scratch',
      },
      {
        name: 'vdb',
        backup: true,
        backupMode: 'full',
        incremental: null,
        exportName: 'vdb',
        exportBitmap: null,
        scratch: '/tmp/pullback-fixture/vdb.scratch',
      },
    ]);
  });

  it('reads an incremental job: the qcow2 disk exports a bitmap, the raw disk is full', () => {
    const b = parseBackupXml(fixture('backup-incremental.xml'));
    expect(b.incremental).toBe('cp0');
    const [vda, vdb] = b.disks;
    expect(vda).toMatchObject({ name: 'vda', backupMode: 'incremental', incremental: 'cp0', exportName: 'vda', exportBitmap: 'backup-vda' });
    expect(vdb).toMatchObject({ name: 'vdb', backupMode: 'full', incremental: null, exportName: 'vdb', exportBitmap: null });
  });
});

describe('parseCheckpointXml (checkpoint-dumpxml of real checkpoints)', () => {
  it('reads a root checkpoint with its embedded domain', () => {
    const c = parseCheckpointXml(fixture('checkpoint-cp0.xml'));
    expect(c).toEqual({
      name: 'cp0',
      description: 'fixture cp0 & co',
      parent: null,
      creationTime: 1795311034,
      disks: [
        { name: 'vda', checkpoint: 'bitmap', bitmap: 'cp0', size: null },
        { name: 'vdb', checkpoint: 'no', bitmap: null, size: null },
      ],
      hasDomain: true,
    });
  });

  it('reads a child checkpoint with --no-domain --size', () => {
    const c = parseCheckpointXml(fixture('checkpoint-cp1-nodomain-size.xml'));
    expect(c.parent).toBe('cp0');
    expect(c.hasDomain).toBe(false);
    expect(c.creationTime).toBe(1795311064);
    expect(c.disks[0]).toEqual({ name: 'vda', checkpoint: 'bitmap', bitmap: 'cp1', size: 0 });
  });

  it('does not take the embedded domain\'s <name> for the checkpoint\'s', () => {
    // The embedded <domain> has its own <name>; only the direct child counts.
    expect(parseCheckpointXml(fixture('checkpoint-cp0.xml')).name).toBe('cp0');
  });
});

describe('virsh text output', () => {
  it('domjobinfo: no job, a running pull backup, a cancelled one', () => {
    expect(parseJobInfo(fixture('domjobinfo-none.txt'))).toMatchObject({ type: 'None', active: false, operation: null });
    const running = parseJobInfo(fixture('domjobinfo-backup.txt'));
    expect(running).toMatchObject({ type: 'Unbounded', active: true, operation: 'Backup', errorMessage: null });
    expect(running.fields['Temporary disk space total']).toBe('96.000 MiB');
    expect(parseJobInfo(fixture('domjobinfo-cancelled.txt'))).toMatchObject({
      type: 'Completed',
      active: false,
      operation: 'Backup',
      errorMessage: 'Operation canceled',
    });
    expect(() => parseJobInfo('garbage\n')).toThrow(expect.objectContaining({ code: 'VIRSH_FAILED' }));
  });

  it('checkpoint-list --name --topological', () => {
    expect(parseNameList(fixture('checkpoint-list.txt'))).toEqual(['cp0', 'cp1']);
    expect(parseNameList('\n')).toEqual([]);
  });

  it('domstate with and without --reason', () => {
    expect(parseDomState('running\n\n')).toBe('running');
    expect(parseDomState('shut off (destroyed)\n')).toBe('shut off');
    expect(() => parseDomState('exploded\n')).toThrow(expect.objectContaining({ code: 'VIRSH_FAILED' }));
  });

  it('version', () => {
    const out =
      'Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.22\n';
    expect(parseVersion(out)).toEqual({ library: '9.0.0', hypervisor: { name: 'QEMU', version: '7.2.22' } });
  });
});
