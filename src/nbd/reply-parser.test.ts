import { describe, expect, it } from 'vitest';
import { ReplyParser, type PayloadTarget, type ReplyHandler } from './reply-parser.js';
import { NbdProtocolViolation } from './violation.js';

// A byte stream of replies for three requests (cookie 1: simple read of 10 bytes; cookie 2:
// structured read of 3000 bytes in a data chunk, a hole and a final data chunk; cookie 3: a
// block status chunk then an error chunk and NONE), and a handler that records what it sees.
function simple(cookie: number, errno: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(0x67446698, 0);
  h.writeUInt32BE(errno, 4);
  h.writeUInt32BE(cookie, 12);
  return Buffer.concat([h, data]);
}
function chunk(cookie: number, flags: number, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(0x668e33ef, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeUInt32BE(cookie, 12);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}
function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

const data2a = Buffer.alloc(1000, 0xa1);
const data2c = Buffer.alloc(1500, 0xc3);
const holePayload = Buffer.concat([u64(1000 + 5000), Buffer.from([0, 0, 0x01, 0xf4])]); // 500 bytes
const bsPayload = Buffer.from([0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 3]);
const errPayload = Buffer.concat([Buffer.from([0, 0, 0, 5, 0, 3]), Buffer.from('bad')]);
const STREAM = Buffer.concat([
  simple(1, 0, Buffer.from('0123456789')),
  chunk(2, 0, 1, Buffer.concat([u64(5000), data2a])),
  chunk(3, 0, 5, bsPayload),
  chunk(2, 0, 2, holePayload),
  chunk(3, 0, 0x8001, errPayload),
  chunk(2, 1, 1, Buffer.concat([u64(6500), data2c])),
  chunk(3, 1, 0, Buffer.alloc(0)),
]);

class Recorder implements ReplyHandler {
  events: string[] = [];
  dest1 = Buffer.alloc(10);
  dest2 = Buffer.alloc(3000);
  onSimpleReply(cookie: number, errno: number): (PayloadTarget & { length: number }) | null {
    this.events.push(`simple ${cookie} ${errno}`);
    return { buf: this.dest1, pos: 0, length: 10 };
  }
  onSimpleReplyDone(cookie: number): void {
    this.events.push(`simple-done ${cookie}`);
  }
  onChunkHeader(cookie: number, flags: number, type: number, length: number): boolean {
    this.events.push(`chunk ${cookie} ${flags} ${type} ${length}`);
    return type === 1;
  }
  onDataChunk(cookie: number, flags: number, offset: number, dataLength: number): PayloadTarget {
    this.events.push(`data ${cookie} ${offset} ${dataLength}`);
    return { buf: this.dest2, pos: offset - 5000 };
  }
  onDataChunkDone(cookie: number, flags: number): void {
    this.events.push(`data-done ${cookie} ${flags}`);
  }
  onChunk(cookie: number, flags: number, type: number, payload: Buffer): void {
    this.events.push(`payload ${cookie} ${type} ${payload.toString('hex')}`);
  }
}

function expected(): Recorder {
  const r = new Recorder();
  new ReplyParser(r).feed(STREAM);
  return r;
}

describe('ReplyParser', () => {
  it('frames simple and structured replies and routes payloads', () => {
    const r = expected();
    expect(r.events).toEqual([
      'simple 1 0',
      'simple-done 1',
      'chunk 2 0 1 1008',
      'data 2 5000 1000',
      'data-done 2 0',
      'chunk 3 0 5 12',
      `payload 3 5 ${bsPayload.toString('hex')}`,
      'chunk 2 0 2 12',
      `payload 2 2 ${holePayload.toString('hex')}`,
      'chunk 3 0 32769 9',
      `payload 3 32769 ${errPayload.toString('hex')}`,
      'chunk 2 1 1 1508',
      'data 2 6500 1500',
      'data-done 2 1',
      'chunk 3 1 0 0',
      'payload 3 0 ',
    ]);
    expect(r.dest1.toString()).toBe('0123456789');
    expect(r.dest2.subarray(0, 1000)).toEqual(data2a);
    expect(r.dest2.subarray(1500)).toEqual(data2c);
    expect(new ReplyParser(r).idle).toBe(true);
  });

  it('gives the same result for every split of the stream into two pieces', () => {
    const want = expected();
    for (let cut = 0; cut <= STREAM.length; cut++) {
      const r = new Recorder();
      const p = new ReplyParser(r);
      p.feed(STREAM.subarray(0, cut));
      p.feed(STREAM.subarray(cut));
      expect(r.events, `cut at ${cut}`).toEqual(want.events);
      expect(r.dest2.equals(want.dest2)).toBe(true);
      expect(p.idle).toBe(true);
    }
  });

  it('gives the same result for socket-like reads of random sizes into the buffers it hands out', () => {
    const want = expected();
    for (let seed = 1; seed <= 50; seed++) {
      const r = new Recorder();
      const p = new ReplyParser(r, 64); // tiny scratch: exercises compaction and direct reads
      let pos = 0;
      let x = seed;
      while (pos < STREAM.length) {
        x = (x * 1103515245 + 12345) % 2147483648;
        const t = p.target();
        const n = Math.min(t.length, STREAM.length - pos, 1 + (x % 700));
        STREAM.copy(t, 0, pos, pos + n);
        pos += n;
        p.commit(n, t);
      }
      expect(r.events, `seed ${seed}`).toEqual(want.events);
      expect(r.dest1.equals(want.dest1) && r.dest2.equals(want.dest2)).toBe(true);
    }
  });

  it('describes a cut-off message and rejects a bad magic', () => {
    const p = new ReplyParser(new Recorder());
    p.feed(STREAM.subarray(0, 16 + 10 + 20 + 8 + 300));
    expect(p.idle).toBe(false);
    expect(p.pendingDescription()).toBe('the NBD_REPLY_TYPE_OFFSET_DATA payload for cookie 2 (300 of 1000 bytes received)');
    const q = new ReplyParser(new Recorder());
    expect(() => q.feed(Buffer.from('deadbeef00000000', 'hex'))).toThrow(NbdProtocolViolation);
    expect(() => new ReplyParser(new Recorder()).feed(Buffer.from('6e8a278c00000000', 'hex'))).toThrow(/extended header/);
  });
});
