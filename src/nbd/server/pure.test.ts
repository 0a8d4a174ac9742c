// The pure parts of the server: request checks, block status shaping, the byte queue, and
// option haggling state (which contexts survive, shutdown, abort).
import { describe, expect, it } from 'vitest';
import {
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_READ,
  NBD_EINVAL,
  NBD_EOVERFLOW,
  NBD_OPT_ABORT,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ERR_SHUTDOWN,
} from '../constants.js';
import { encodeGoData, encodeMetaContextData } from '../option-codec.js';
import { decodeRequest, encodeRequest, type DecodedRequest } from '../request-codec.js';
import { shapeExtents } from './block-status.js';
import { ByteQueue } from './byte-queue.js';
import { checkRequest } from './check-request.js';
import type { NbdExport } from './export.js';
import { Negotiation, type Session } from './negotiation.js';

/** A plain export description (negotiation never reads data). */
function exportNamed(name: string, size = 1 << 30): NbdExport {
  return {
    name,
    description: '',
    size,
    preferredBlockSize: 65536,
    read: () => Promise.resolve([]),
    allocation: () => [],
  };
}

function req(type: number, offset: number, length: number, flags = 0): DecodedRequest {
  const d = decodeRequest(encodeRequest(flags, type, 1, offset, length), 0);
  if (typeof d === 'string') throw new Error(d);
  return d;
}

describe('checkRequest', () => {
  const session = (structured: boolean, flags: number): Session => ({
    export: exportNamed('vda', 1 << 30),
    structured,
    transmissionFlags: flags,
    contexts: new Map(),
  });
  it('large reads: EOVERFLOW with structured replies, EINVAL with simple ones; FUA tolerated; DF only when advertised', () => {
    expect(checkRequest(req(NBD_CMD_READ, 0, 64 << 20), session(true, 0x80), 32 << 20)?.errno).toBe(NBD_EOVERFLOW);
    expect(checkRequest(req(NBD_CMD_READ, 0, 64 << 20), session(false, 0), 32 << 20)?.errno).toBe(NBD_EINVAL);
    expect(checkRequest(req(NBD_CMD_READ, 0, 4096, NBD_CMD_FLAG_FUA), session(false, 0), 32 << 20)).toBeNull();
    expect(checkRequest(req(NBD_CMD_READ, 0, 4096, NBD_CMD_FLAG_DF), session(false, 0), 32 << 20)?.errno).toBe(NBD_EINVAL);
    expect(checkRequest(req(NBD_CMD_READ, 0, 4096, NBD_CMD_FLAG_DF), session(true, 0x80), 32 << 20)).toBeNull();
    expect(checkRequest(req(NBD_CMD_READ, (1 << 30) - 1, 2), session(true, 0x80), 32 << 20)?.message).toMatch(/beyond the export size/);
  });
});

describe('shapeExtents', () => {
  it('merges equal flags, clips to the request, REQ_ONE keeps one', () => {
    const e = [
      { length: 10, flags: 0 },
      { length: 5, flags: 0 },
      { length: 20, flags: 3 },
      { length: 100, flags: 0 },
    ];
    expect(shapeExtents(e, 40, false)).toEqual([
      { length: 15, flags: 0 },
      { length: 20, flags: 3 },
      { length: 5, flags: 0 },
    ]);
    expect(shapeExtents(e, 12, true)).toEqual([{ length: 12, flags: 0 }]);
    expect(() => shapeExtents([], 10, false)).toThrow(/no allocation extents/);
    expect(() => shapeExtents([{ length: 0, flags: 0 }], 10, false)).toThrow(/length 0/);
  });
});

describe('ByteQueue', () => {
  it('takes across buffer boundaries and skips', () => {
    const q = new ByteQueue();
    q.push(Buffer.from('abc'));
    q.push(Buffer.from('defgh'));
    q.push(Buffer.from('ij'));
    expect(q.take(2).toString()).toBe('ab');
    expect(q.take(4).toString()).toBe('cdef');
    expect(q.skip(3)).toBe(3);
    expect(q.length).toBe(1);
    expect(q.skip(10)).toBe(1);
    expect(q.length).toBe(0);
    expect(() => q.take(1)).toThrow(RangeError);
  });
});

describe('Negotiation', () => {
  const cfg = { exports: [exportNamed('vda'), exportNamed('vdb')], defaultExport: 'vda', maxPayload: 32 << 20 };
  const selectBase = (n: Negotiation, name: string): void => {
    n.handle(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    n.handle(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData(name, ['base:allocation']));
  };

  it('contexts count only for the export they were set for; an empty name is the default export', () => {
    const a = new Negotiation(cfg, true);
    selectBase(a, 'vda');
    const go = a.handle(NBD_OPT_GO, encodeGoData('', []));
    expect(go.kind === 'transmission' && [...go.session.contexts.values()]).toEqual(['base:allocation']);
    const b = new Negotiation(cfg, true);
    selectBase(b, 'vda');
    const other = b.handle(NBD_OPT_GO, encodeGoData('vdb', []));
    expect(other.kind === 'transmission' && other.session.contexts.size).toBe(0);
  });

  it('a failed SET_META_CONTEXT clears earlier selections', () => {
    const n = new Negotiation(cfg, true);
    selectBase(n, 'vda');
    n.handle(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData('nope', ['base:allocation']));
    const go = n.handle(NBD_OPT_GO, encodeGoData('vda', []));
    expect(go.kind === 'transmission' && go.session.contexts.size).toBe(0);
  });

  it('while shutting down options get NBD_REP_ERR_SHUTDOWN, but NBD_OPT_ABORT is still acknowledged', () => {
    const n = new Negotiation(cfg, true);
    n.shuttingDown = true;
    const r = n.handle(NBD_OPT_LIST, Buffer.alloc(0));
    expect(r.kind).toBe('continue');
    expect(r.kind === 'continue' && r.replies[0]?.readUInt32BE(12)).toBe(NBD_REP_ERR_SHUTDOWN);
    expect(n.handle(NBD_OPT_ABORT, Buffer.from('ignored')).kind).toBe('abort');
  });
});
