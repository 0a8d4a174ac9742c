import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkpointXmlWithoutParent, parseCheckpointXml } from './checkpoint-xml.js';

const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/libvirt/${name}`, import.meta.url), 'utf8');

describe('checkpointXmlWithoutParent', () => {
  it('drops <parent> and keeps everything else of a captured checkpoint', () => {
    const xml = fixture('checkpoint-cp1-nodomain-size.xml');
    const before = parseCheckpointXml(xml);
    expect(before.parent).not.toBeNull();
    const after = parseCheckpointXml(checkpointXmlWithoutParent(xml));
    expect(after).toEqual({ ...before, parent: null });
    expect(checkpointXmlWithoutParent(xml)).not.toContain('<parent>');
  });
});
