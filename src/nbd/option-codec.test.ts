import { describe, expect, it } from 'vitest';
import { NBD_INFO_BLOCK_SIZE, NBD_OPT_GO } from './constants.js';
import { decodeOptionReplyHeader, decodeRepInfo, decodeRepServer, encodeGoData, encodeMetaContextData, encodeOption } from './option-codec.js';

describe('option codec', () => {
  it('encodes NBD_OPT_GO with its info requests (proto.md NBD_OPT_INFO/NBD_OPT_GO)', () => {
    const opt = encodeOption(NBD_OPT_GO, encodeGoData('vda', [NBD_INFO_BLOCK_SIZE]));
    expect(opt.toString('hex')).toBe(
      ['49484156454f5054', '00000007', '0000000b', '00000003', Buffer.from('vda').toString('hex'), '0001', '0003'].join(''),
    );
  });

  it('encodes meta context queries', () => {
    expect(encodeMetaContextData('e', ['base:allocation']).toString('hex')).toBe(
      ['00000001', '65', '00000001', '0000000f', Buffer.from('base:allocation').toString('hex')].join(''),
    );
    expect(() => encodeMetaContextData('e', ['a\0b'])).toThrow(/NUL/);
  });

  it('checks reply magic, option echo and info lengths', () => {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(0x3e889045565a9n, 0);
    h.writeUInt32BE(7, 8);
    h.writeUInt32BE(1, 12);
    expect(decodeOptionReplyHeader(h, 7)).toEqual({ option: 7, type: 1, length: 0 });
    expect(() => decodeOptionReplyHeader(h, 8)).toThrow(/is for NBD_OPT_GO, expected a reply to NBD_OPT_STRUCTURED_REPLY/);
    h.writeUInt32BE(0, 0);
    expect(() => decodeOptionReplyHeader(h, 7)).toThrow(/magic/);
    expect(() => decodeRepInfo(Buffer.from('0000000000', 'hex'))).toThrow(/NBD_INFO_EXPORT has length 5, the spec requires 12/);
    expect(decodeRepInfo(Buffer.from('0003000002000000100000100000', 'hex'))).toEqual({
      info: 'block-size',
      minimum: 512,
      preferred: 4096,
      maximum: 1048576,
    });
    expect(decodeRepInfo(Buffer.from('0063ff', 'hex'))).toEqual({ info: 'unknown', type: 99 });
    expect(decodeRepServer(Buffer.concat([Buffer.from('00000002', 'hex'), Buffer.from('vdaxyz')]))).toEqual({ name: 'vd', description: 'axyz' });
    expect(() => decodeRepServer(Buffer.from('00000009aa', 'hex'))).toThrow(/exceeds/);
  });
});
