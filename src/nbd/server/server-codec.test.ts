// Round trips of the server-side encoders/decoders appended to src/nbd against the client's
// existing ones: what the server writes is exactly what the client reads, and vice versa.
import { describe, expect, it } from 'vitest';
import { NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_ERROR_OFFSET } from '../constants.js';
import {
  decodeGoData,
  decodeMetaContextData,
  decodeOptionHeader,
  decodeRepInfo,
  decodeRepMetaContext,
  decodeRepServer,
  encodeGoData,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeMetaContextData,
  encodeOption,
  encodeRepMetaContext,
  encodeRepServer,
} from '../option-codec.js';
import { decodeBlockStatus, decodeErrorChunk, decodeOffsetHole, encodeBlockStatus, encodeErrorChunk, encodeOffsetHole } from '../reply-codec.js';
import { decodeRequest, encodeRequest } from '../request-codec.js';
import { NbdProtocolViolation } from '../violation.js';

describe('server codecs', () => {
  it('option data round-trips (GO/INFO, meta context queries)', () => {
    expect(decodeGoData(encodeGoData('vda', [3, 1]))).toEqual({ exportName: 'vda', infos: [3, 1] });
    expect(decodeGoData(encodeGoData('', []))).toEqual({ exportName: '', infos: [] });
    expect(decodeMetaContextData(encodeMetaContextData('vdä', ['base:allocation', 'qemu:x']))).toEqual({
      exportName: 'vdä',
      queries: ['base:allocation', 'qemu:x'],
    });
    expect(decodeOptionHeader(encodeOption(7, Buffer.from('abc')))).toEqual({ option: 7, length: 3 });
  });

  it('inconsistent option data is a violation (the server answers NBD_REP_ERR_INVALID)', () => {
    const go = encodeGoData('vda', [3]);
    expect(() => decodeGoData(go.subarray(0, go.length - 1))).toThrow(NbdProtocolViolation);
    const meta = encodeMetaContextData('vda', ['base:allocation']);
    expect(() => decodeMetaContextData(meta.subarray(0, meta.length - 2))).toThrow(NbdProtocolViolation);
    expect(() => decodeMetaContextData(Buffer.concat([meta, Buffer.from([0])]))).toThrow(NbdProtocolViolation);
    expect(() => decodeOptionHeader(Buffer.alloc(16))).toThrow(NbdProtocolViolation);
  });

  it('option reply payloads decode with the client decoders', () => {
    expect(decodeRepServer(encodeRepServer('vda', 'a disk'))).toEqual({ name: 'vda', description: 'a disk' });
    expect(decodeRepMetaContext(encodeRepMetaContext(1, 'base:allocation'))).toEqual({ id: 1, name: 'base:allocation' });
    const flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;
    expect(decodeRepInfo(encodeInfoExport(2 ** 40 + 5, flags))).toEqual({ info: 'export', size: 2 ** 40 + 5, flags });
    expect(decodeRepInfo(encodeInfoBlockSize(1, 65536, 1 << 25))).toEqual({ info: 'block-size', minimum: 1, preferred: 65536, maximum: 1 << 25 });
    expect(decodeRepInfo(encodeInfoName('vda'))).toEqual({ info: 'name', name: 'vda' });
    expect(decodeRepInfo(encodeInfoDescription('d'))).toEqual({ info: 'description', description: 'd' });
  });

  it('request headers round-trip, cookies verbatim; a bad magic or an offset beyond 2^53 is reported', () => {
    const r = encodeRequest(1, 0, 0xdeadbeef, 2 ** 45 + 3, 4096);
    const d = decodeRequest(r, 0);
    expect(d).toMatchObject({ flags: 1, type: 0, offset: 2 ** 45 + 3, length: 4096 });
    expect(typeof d !== 'string' && d.cookie.toString('hex')).toBe('00000000deadbeef');
    expect(decodeRequest(Buffer.alloc(28), 0)).toMatch(/magic/);
    const big = Buffer.from(r);
    big.writeUInt32BE(0xffffffff, 16);
    expect(decodeRequest(big, 0)).toMatch(/2\^53/);
  });

  it('reply chunk payloads decode with the client decoders', () => {
    const cookie = Buffer.from('0102030405060708', 'hex');
    const hole = encodeOffsetHole(cookie, 1, 2 ** 33, 65536);
    expect(hole.subarray(8, 16).equals(cookie)).toBe(true);
    expect(decodeOffsetHole(hole.subarray(20))).toEqual({ offset: 2 ** 33, length: 65536 });
    const bs = encodeBlockStatus(cookie, 1, 7, [{ length: 100, flags: 3 }, { length: 200, flags: 0 }]);
    expect(decodeBlockStatus(bs.subarray(20))).toEqual({ contextId: 7, lengths: [100, 200], flags: [3, 0] });
    expect(decodeErrorChunk(NBD_REPLY_TYPE_ERROR, encodeErrorChunk(cookie, 1, 5, 'boom').subarray(20))).toEqual({ errno: 5, message: 'boom' });
    const eo = encodeErrorChunk(cookie, 1, 5, 'at', 12345);
    expect(eo.readUInt16BE(6)).toBe(NBD_REPLY_TYPE_ERROR_OFFSET);
    expect(decodeErrorChunk(NBD_REPLY_TYPE_ERROR_OFFSET, eo.subarray(20))).toEqual({ errno: 5, message: 'at', offset: 12345 });
    // Messages are cut to the 4096-byte string limit.
    expect(decodeErrorChunk(NBD_REPLY_TYPE_ERROR, encodeErrorChunk(cookie, 1, 5, 'x'.repeat(5000)).subarray(20)).message).toHaveLength(4096);
  });
});
