// transformDomainForRestore: golden output for the rich captured domain, and proof that
// everything not meant to change survives (unknown elements, attributes, comments, CDATA).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/libvirt/domain-xml.js';
import { transformDomainForRestore } from '../../src/libvirt/restore-xml.js';
import { parseXml, serializeXml } from '../../src/libvirt/xml-tree.js';
import type { XmlNode } from '../../src/libvirt/xml-tree.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/libvirt/${name}`, import.meta.url), 'utf8');

const richPlan = {
  name: 'pbfix-rich-restored',
  uuid: '5b1f0d8e-7a36-4c55-9a43-0d0c1e2f3a4b',
  disks: {
    vda: { path: '/restore/vda.qcow2', format: 'qcow2' },
    vdb: { path: '/restore/vdb.raw', format: 'raw' },
    vdc: { path: '/restore/vdc.qcow2', format: 'qcow2' },
    vdd: { path: '/restore/vdd.raw', format: 'raw' },
    vde: { path: '/restore/vde.qcow2', format: 'qcow2' },
    sdc: 'remove',
    fda: 'remove',
  },
} as const;

/** Every element as "path[@attr=value...]" lines with text, for structural comparison. */
function flatten(node: XmlNode, path = ''): string[] {
  if (node.kind !== 'element') return [];
  const here = `${path}/${node.name}`;
  const attrs = Object.entries(node.attrs)
    .map(([k, v]) => `@${k}=${v}`)
    .join(' ');
  const text = node.children
    .filter((c) => c.kind === 'text')
    .map((c) => (c.kind === 'text' ? c.text.trim() : ''))
    .join('');
  return [`${here} ${attrs} ${text}`.trim(), ...node.children.flatMap((c) => flatten(c, here))];
}

describe('transformDomainForRestore', () => {
  it('rewrites the rich domain as the golden file says', () => {
    const out = transformDomainForRestore(fixture('domain-rich-inactive.xml'), {
      ...richPlan,
      disks: { ...richPlan.disks },
    });
    expect(out).toBe(fixture('restore-rich.golden.xml'));
    const d = parseDomainXml(out);
    expect(d.name).toBe('pbfix-rich-restored');
    expect(d.uuid).toBe('5b1f0d8e-7a36-4c55-9a43-0d0c1e2f3a4b');
    expect(d.disks.map((x) => [x.target, x.sourceType, x.source, x.driverType, x.hasBackingStore])).toEqual([
      ['vda', 'file', '/restore/vda.qcow2', 'qcow2', false],
      ['vdb', 'file', '/restore/vdb.raw', 'raw', false],
      ['vdc', 'file', '/restore/vdc.qcow2', 'qcow2', false],
      ['vdd', 'file', '/restore/vdd.raw', 'raw', false],
      ['vde', 'file', '/restore/vde.qcow2', 'qcow2', false],
      ['vdf', 'file', '/var/lib/libvirt/images/shared.raw', 'raw', false],
      ['sda', 'file', '/var/lib/libvirt/images/install.iso', 'raw', false],
      ['sdb', 'file', null, 'raw', false],
    ]);
    expect(out).not.toContain('<mac ');
  });

  it('changes nothing but the planned parts (structural diff of the whole document)', () => {
    const before = flatten(parseXml(fixture('domain-rich-inactive.xml'), 'before').root);
    const after = flatten(parseXml(fixture('restore-rich.golden.xml'), 'after').root);
    const removed = before.filter((l) => !after.includes(l));
    const added = after.filter((l) => !before.includes(l));
    // Every removed line is a name/uuid/mac/disk-related one; every other element survived.
    for (const l of removed) {
      expect(l).toMatch(/^\/domain\/(name|uuid) |^\/domain\/devices\/interface\/mac |^\/domain\/devices\/disk/);
    }
    for (const l of added) expect(l).toMatch(/^\/domain\/(name|uuid) |^\/domain\/devices\/disk/);
    expect(before.filter((l) => l.startsWith('/domain/metadata'))).toEqual(
      after.filter((l) => l.startsWith('/domain/metadata')),
    );
    expect(after).toContain('/domain/metadata/app:info @xmlns:app=https://example.invalid/app @owner=ops keep me');
  });

  it('keeps unknown elements, attributes, comments, CDATA and entities through a round trip', () => {
    const xml = [
      "<domain type='kvm' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>",
      '  <name>src</name>',
      '  <uuid>00000000-0000-0000-0000-000000000001</uuid>',
      '  <!-- keep this comment -->',
      '  <description><![CDATA[a <raw> & section]]></description>',
      "  <futureThing level='9' flavour=\"a&apos;b&quot;c&amp;d\">x &lt; y</futureThing>",
      '  <devices>',
      "    <disk type='file' device='disk' futureattr='on'>",
      "      <driver name='qemu' type='qcow2' iothread='1'/>",
      "      <source file='/old/a.qcow2' index='3' startupPolicy='optional'><seclabel model='dac' relabel='no'/></source>",
      "      <backingStore type='file'><format type='qcow2'/><source file='/old/base.qcow2'/></backingStore>",
      "      <target dev='vda' bus='virtio'/>",
      '    </disk>',
      "    <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>",
      '  </devices>',
      "  <qemu:commandline><qemu:arg value='-newarg'/></qemu:commandline>",
      '</domain>',
      '',
    ].join('\n');
    const out = transformDomainForRestore(xml, {
      name: 'dst',
      macs: ['52:54:00:aa:bb:cc'],
      disks: { vda: { path: '/new/a.raw', format: 'raw' } },
    });
    expect(out).toBe(
      [
        '<domain type="kvm" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">',
        '  <name>dst</name>',
        '  <!-- keep this comment -->',
        '  <description><![CDATA[a <raw> & section]]></description>',
        '  <futureThing level="9" flavour="a&apos;b&quot;c&amp;d">x &lt; y</futureThing>',
        '  <devices>',
        '    <disk type="file" device="disk" futureattr="on">',
        '      <driver name="qemu" type="raw" iothread="1"/>',
        '      <source file="/new/a.raw" startupPolicy="optional"><seclabel model="dac" relabel="no"/></source>',
        '      <target dev="vda" bus="virtio"/>',
        '    </disk>',
        '    <interface type="network"><mac address="52:54:00:aa:bb:cc"/><source network="default"/></interface>',
        '  </devices>',
        '  <qemu:commandline><qemu:arg value="-newarg"/></qemu:commandline>',
        '</domain>',
        '',
      ].join('\n'),
    );
  });

  it('a plain parse/serialize round trip of every captured document changes only quote style', () => {
    for (const name of ['domain-live.xml', 'domain-rich-inactive.xml', 'checkpoint-cp0.xml', 'backup-incremental.xml']) {
      const xml = fixture(name);
      expect(serializeXml(parseXml(xml, name))).toBe(xml.replace(/='([^']*)'/g, '="$1"'));
    }
  });

  it('adds a uuid when asked and regenerates NVRAM', () => {
    const xml =
      "<domain type='kvm'>\n  <name>a</name>\n  <os>\n    <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/a_VARS.fd</nvram>\n  </os>\n</domain>\n";
    const out = transformDomainForRestore(xml, { name: 'b', uuid: '5b1f0d8e-7a36-4c55-9a43-0d0c1e2f3a4b', disks: {} });
    expect(out).toContain('  <name>b</name>\n  <uuid>5b1f0d8e-7a36-4c55-9a43-0d0c1e2f3a4b</uuid>\n');
    expect(out).toContain('<nvram template="/usr/share/OVMF/OVMF_VARS.fd"/>');
    const kept = transformDomainForRestore(xml, { name: 'b', nvram: '/x/b_VARS.fd', disks: {} });
    expect(kept).toContain('<nvram template="/usr/share/OVMF/OVMF_VARS.fd">/x/b_VARS.fd</nvram>');
  });

  it('refuses plans that would share or lose a writable disk, or are malformed', () => {
    const xml = fixture('domain-rich-inactive.xml');
    const base = { ...richPlan, disks: { ...richPlan.disks } as Record<string, unknown> };
    const attempt = (disks: Record<string, unknown>, extra: object = {}) => () =>
      transformDomainForRestore(xml, { ...richPlan, ...extra, disks: disks as never });
    const { vdb: _omit, ...withoutVdb } = base.disks;
    expect(attempt(withoutVdb)).toThrow(/writable disk vdb has no restored image/);
    expect(attempt({ ...base.disks, vdz: 'remove' })).toThrow(/has no disk vdz/);
    expect(attempt({ ...base.disks, vda: { path: 'rel.qcow2', format: 'qcow2' } })).toThrow(/must be absolute/);
    expect(attempt(base.disks, { uuid: 'nope' })).toThrow(/invalid UUID/);
    expect(attempt(base.disks, { macs: ['52:54:00:00:00:01'] })).toThrow(/1 MAC address\(es\) given for 2 interface/);
    expect(attempt(base.disks, { name: '' })).toThrow(expect.objectContaining({ code: 'XML_INVALID' }));
  });
});
