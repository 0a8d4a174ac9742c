// A scripted NBD server for protocol-error tests: it does a correct fixed-newstyle handshake
// (structured replies, metadata contexts, NBD_OPT_GO with export info and block sizes), then
// hands every transmission request to the test's `onRequest`, which answers however the test
// wants — correctly, wrongly, late or never. Written from doc/proto.md; used only in tests.
import net from 'node:net';
import { join } from 'node:path';
import type { NbdTarget } from '../../src/nbd/index.js';

export interface FakeRequest {
  flags: number;
  type: number;
  /** The raw 8-byte cookie, to echo back (or not). */
  cookie: Buffer;
  offset: number;
  length: number;
}

export interface FakeConn {
  write(b: Buffer): void;
  end(): void;
  destroy(): void;
}

export interface FakeScript {
  size?: number;
  /** Offer structured replies (default true). */
  structured?: boolean;
  /** Context names the server knows (default ['base:allocation']); ids are 1, 2, ... */
  contexts?: string[];
  blockSize?: { minimum: number; preferred: number; maximum: number };
  /** Transmission flags (default HAS_FLAGS | READ_ONLY | CAN_MULTI_CONN). */
  transmissionFlags?: number;
  /** Never send the greeting (a server that hangs during the handshake). */
  silent?: boolean;
  onRequest(req: FakeRequest, conn: FakeConn): void;
}

export interface FakeServer {
  target: NbdTarget;
  /** Requests seen, in arrival order, over all connections. */
  requests: FakeRequest[];
  stop(): Promise<void>;
}

const NBDMAGIC = Buffer.from('NBDMAGIC');
const IHAVEOPT = Buffer.from('IHAVEOPT');
const REP_MAGIC = 0x3e889045565a9n;

function optReply(option: number, type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(REP_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(payload.length, 16);
  return Buffer.concat([b, payload]);
}

// ---- reply builders (transmission phase)

export function simpleReply(cookie: Buffer, errno: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(0x67446698, 0);
  b.writeUInt32BE(errno, 4);
  cookie.copy(b, 8);
  return Buffer.concat([b, data]);
}

export function chunk(cookie: Buffer, flags: number, type: number, payload: Buffer, lengthOverride?: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32BE(0x668e33ef, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  cookie.copy(b, 8);
  b.writeUInt32BE(lengthOverride ?? payload.length, 16);
  return Buffer.concat([b, payload]);
}

export const DONE = 1;

export function offsetData(cookie: Buffer, flags: number, offset: number, data: Buffer): Buffer {
  const p = Buffer.alloc(8);
  p.writeBigUInt64BE(BigInt(offset), 0);
  return chunk(cookie, flags, 1, Buffer.concat([p, data]));
}

export function offsetHole(cookie: Buffer, flags: number, offset: number, length: number): Buffer {
  const p = Buffer.alloc(12);
  p.writeBigUInt64BE(BigInt(offset), 0);
  p.writeUInt32BE(length, 8);
  return chunk(cookie, flags, 2, p);
}

export function blockStatus(cookie: Buffer, flags: number, contextId: number, extents: Array<[number, number]>): Buffer {
  const p = Buffer.alloc(4 + 8 * extents.length);
  p.writeUInt32BE(contextId, 0);
  extents.forEach(([len, f], i) => {
    p.writeUInt32BE(len, 4 + 8 * i);
    p.writeUInt32BE(f, 8 + 8 * i);
  });
  return chunk(cookie, flags, 5, p);
}

export function errorChunk(cookie: Buffer, flags: number, errno: number, message: string): Buffer {
  const m = Buffer.from(message);
  const p = Buffer.alloc(6);
  p.writeUInt32BE(errno, 0);
  p.writeUInt16BE(m.length, 4);
  return chunk(cookie, flags, 0x8001, Buffer.concat([p, m]));
}

export function noneChunk(cookie: Buffer): Buffer {
  return chunk(cookie, DONE, 0, Buffer.alloc(0));
}

/** A correct reply to a read: one OFFSET_DATA chunk of `fill`-bytes, final. */
export function goodRead(req: FakeRequest, fill = 0x5a): Buffer {
  return offsetData(req.cookie, DONE, req.offset, Buffer.alloc(req.length, fill));
}

export async function startFakeServer(dir: string, script: FakeScript): Promise<FakeServer> {
  const socketPath = join(dir, `fake-${Math.random().toString(36).slice(2)}.sock`);
  const size = script.size ?? 1024 * 1024;
  const contexts = script.contexts ?? ['base:allocation'];
  const requests: FakeRequest[] = [];
  const sockets = new Set<net.Socket>();

  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    if (script.silent === true) return;
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    const conn: FakeConn = { write: (b) => sock.write(b), end: () => sock.end(), destroy: () => sock.destroy() };
    const hello = Buffer.alloc(18);
    NBDMAGIC.copy(hello, 0);
    IHAVEOPT.copy(hello, 8);
    hello.writeUInt16BE(1 | 2, 16); // FIXED_NEWSTYLE | NO_ZEROES
    sock.write(hello);

    const handleOption = (option: number, data: Buffer): void => {
      switch (option) {
        case 8: // STRUCTURED_REPLY
          sock.write(optReply(option, script.structured === false ? 0x80000001 : 1));
          return;
        case 9: // LIST_META_CONTEXT
        case 10: {
          // SET_META_CONTEXT: export name, n queries, queries
          let p = 4 + data.readUInt32BE(0);
          const n = data.readUInt32BE(p);
          p += 4;
          const queries: string[] = [];
          for (let i = 0; i < n; i++) {
            const l = data.readUInt32BE(p);
            queries.push(data.toString('utf8', p + 4, p + 4 + l));
            p += 4 + l;
          }
          contexts.forEach((name, i) => {
            if (option === 9 ? queries.length === 0 || queries.includes(name) : queries.includes(name)) {
              const payload = Buffer.alloc(4 + Buffer.byteLength(name));
              payload.writeUInt32BE(option === 9 ? 0 : i + 1, 0);
              payload.write(name, 4);
              sock.write(optReply(option, 4, payload));
            }
          });
          sock.write(optReply(option, 1));
          return;
        }
        case 7: {
          // GO
          const info = Buffer.alloc(12);
          info.writeUInt16BE(0, 0);
          info.writeBigUInt64BE(BigInt(size), 2);
          info.writeUInt16BE(script.transmissionFlags ?? 1 | 2 | (1 << 8), 10); // HAS_FLAGS | READ_ONLY | CAN_MULTI_CONN
          sock.write(optReply(option, 3, info));
          if (script.blockSize !== undefined) {
            const bs = Buffer.alloc(14);
            bs.writeUInt16BE(3, 0);
            bs.writeUInt32BE(script.blockSize.minimum, 2);
            bs.writeUInt32BE(script.blockSize.preferred, 6);
            bs.writeUInt32BE(script.blockSize.maximum, 10);
            sock.write(optReply(option, 3, bs));
          }
          sock.write(optReply(option, 1));
          phase = 'transmission';
          return;
        }
        case 2: // ABORT
          sock.write(optReply(option, 1));
          sock.end();
          return;
        case 3: {
          // LIST
          const name = Buffer.from('fake');
          const p = Buffer.alloc(4);
          p.writeUInt32BE(name.length, 0);
          sock.write(optReply(option, 2, Buffer.concat([p, name, Buffer.from('a scripted server')])));
          sock.write(optReply(option, 1));
          return;
        }
        default:
          sock.write(optReply(option, 0x80000001));
      }
    };

    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === 'flags') {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          if (buf.length < 16) return;
          const len = buf.readUInt32BE(12);
          if (buf.length < 16 + len) return;
          const option = buf.readUInt32BE(8);
          const data = buf.subarray(16, 16 + len);
          buf = buf.subarray(16 + len);
          handleOption(option, data);
        } else {
          if (buf.length < 28) return;
          const req: FakeRequest = {
            flags: buf.readUInt16BE(4),
            type: buf.readUInt16BE(6),
            cookie: Buffer.from(buf.subarray(8, 16)),
            offset: Number(buf.readBigUInt64BE(16)),
            length: buf.readUInt32BE(24),
          };
          buf = buf.subarray(28);
          if (req.type === 2) {
            sock.end(); // NBD_CMD_DISC
            return;
          }
          requests.push(req);
          script.onRequest(req, conn);
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(socketPath, () => resolve());
  });
  return {
    target: { socketPath, exportName: 'fake' },
    requests,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}
