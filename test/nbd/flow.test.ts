// Flow control against the scripted server: no more than maxInflight requests outstanding per
// connection (the rest wait: backpressure), reads spread over connections only when the server
// sets NBD_FLAG_CAN_MULTI_CONN, and replies in any order land in the right place.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient, NbdPool } from '../../src/nbd/index.js';
import { DONE, offsetData, startFakeServer, type FakeConn, type FakeRequest, type FakeServer } from './fake-server.js';
import { makeTempDir } from './servers.js';

let tmp: { dir: string; remove(): Promise<void> };
const servers: FakeServer[] = [];
const closers: Array<{ close(): Promise<void> }> = [];

beforeAll(async () => {
  tmp = await makeTempDir('flow');
});

afterAll(async () => {
  await Promise.allSettled(closers.map((c) => c.close()));
  await Promise.allSettled(servers.map((s) => s.stop()));
  await tmp.remove();
});

/** Byte i of the fake export. */
const byteAt = (i: number): number => (i * 7 + (i >> 12)) & 0xff;
const content = (offset: number, length: number): Buffer => Buffer.from(Array.from({ length }, (_, k) => byteAt(offset + k)));

/** A server that answers in batches, newest first, and records the most requests outstanding at once. */
async function batchingServer(opts: { transmissionFlags?: number } = {}): Promise<{ s: FakeServer; maxOutstanding: () => number }> {
  // Per connection: cookies only mean something on the connection that sent them.
  const state = new Map<FakeConn, { outstanding: number; held: FakeRequest[] }>();
  let max = 0;
  const s = await startFakeServer(tmp.dir, {
    size: 4 * 1024 * 1024,
    ...opts,
    onRequest: (r, conn) => {
      let st = state.get(conn);
      if (st === undefined) state.set(conn, (st = { outstanding: 0, held: [] }));
      const cs = st;
      cs.outstanding++;
      max = Math.max(max, cs.outstanding);
      cs.held.push(r);
      setTimeout(() => {
        const batch = cs.held.reverse();
        cs.held = [];
        for (const q of batch) {
          cs.outstanding--;
          conn.write(offsetData(q.cookie, DONE, q.offset, content(q.offset, q.length)));
        }
      }, 5);
    },
  });
  servers.push(s);
  return { s, maxOutstanding: () => max };
}

describe('flow control', () => {
  it('keeps at most maxInflight requests outstanding and reassembles out-of-order replies', async () => {
    const { s, maxOutstanding } = await batchingServer();
    const c = await NbdClient.connect(s.target, { maxInflight: 4, requestSize: 4096, requestTimeoutMs: 5000 });
    closers.push(c);
    const got = await c.read(1000, 64 * 4096);
    expect(got.equals(content(1000, 64 * 4096))).toBe(true);
    expect(s.requests.length).toBe(65); // unaligned start: 65 request-size pieces
    expect(maxOutstanding()).toBe(4);
  });

  it('uses one connection when the server does not set NBD_FLAG_CAN_MULTI_CONN', async () => {
    const { s } = await batchingServer({ transmissionFlags: 1 | 2 });
    const pool = await NbdPool.open(s.target, { connections: 4, requestSize: 8192, requestTimeoutMs: 5000 });
    closers.push(pool);
    expect(pool.primary.canMultiConn).toBe(false);
    expect(pool.connections).toBe(1);
    expect((await pool.read(4096, 100_000)).equals(content(4096, 100_000))).toBe(true);
  });

  it('spreads requests over all connections when it does', async () => {
    const { s } = await batchingServer();
    const pool = await NbdPool.open(s.target, { connections: 3, requestSize: 8192, maxInflight: 2, requestTimeoutMs: 5000 });
    closers.push(pool);
    expect(pool.connections).toBe(3);
    expect((await pool.read(0, 300_000)).equals(content(0, 300_000))).toBe(true);
    expect(pool.clients.map((c) => c.requestsSent)).toEqual([13, 12, 12]);
  });
});
