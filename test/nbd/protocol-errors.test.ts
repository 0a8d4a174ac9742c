// Misbehaving servers (a scripted fake server, test/nbd/fake-server.ts): each kind of
// protocol violation must end the connection and reject every request in flight with an
// error naming the export, the request's offset and what was wrong; a server error must fail
// only its own request; a silent server must time out. No crash, no hang.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPullbackError, type PullbackError } from '../../src/errors.js';
import { NbdClient, NbdServerError } from '../../src/nbd/index.js';
import {
  DONE,
  blockStatus,
  chunk,
  errorChunk,
  goodRead,
  offsetData,
  offsetHole,
  simpleReply,
  startFakeServer,
  type FakeConn,
  type FakeRequest,
  type FakeScript,
  type FakeServer,
} from './fake-server.js';
import { makeTempDir } from './servers.js';

let tmp: { dir: string; remove(): Promise<void> };
const servers: FakeServer[] = [];
const clients: NbdClient[] = [];

beforeAll(async () => {
  tmp = await makeTempDir('fake');
});

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled(servers.map((s) => s.stop()));
  await tmp.remove();
});

async function serve(script: FakeScript): Promise<FakeServer> {
  const s = await startFakeServer(tmp.dir, script);
  servers.push(s);
  return s;
}

async function connect(s: FakeServer, opts: Parameters<typeof NbdClient.connect>[1] = {}): Promise<NbdClient> {
  const c = await NbdClient.connect(s.target, { requestTimeoutMs: 5000, ...opts });
  clients.push(c);
  return c;
}

/** Answers once `n` requests have arrived, so that all of them are in flight together. */
function afterRequests(n: number, answer: (reqs: FakeRequest[], conn: FakeConn) => void): FakeScript['onRequest'] {
  const seen: FakeRequest[] = [];
  return (req, conn) => {
    seen.push(req);
    if (seen.length === n) answer(seen, conn);
  };
}

async function rejection(p: Promise<unknown>): Promise<PullbackError> {
  try {
    await p;
  } catch (e) {
    if (isPullbackError(e)) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

const OFFSETS = [0, 65536, 131072];

async function threeReads(c: NbdClient): Promise<PullbackError[]> {
  return Promise.all(OFFSETS.map((o) => rejection(c.read(o, 4096))));
}

function expectAllNamed(errs: PullbackError[], code: string, what: RegExp): void {
  errs.forEach((e, i) => {
    expect(e.code).toBe(code);
    expect(e.message).toContain("export 'fake'");
    expect(e.message).toContain(`offset ${OFFSETS[i]}`);
    expect(e.message).toMatch(what);
  });
}

describe('protocol violations end the connection and reject every request in flight', () => {
  it('wrong reply magic', async () => {
    const s = await serve({
      onRequest: afterRequests(3, (reqs, conn) => {
        const bad = goodRead(reqs[0] as FakeRequest);
        bad.writeUInt32BE(0xdeadbeef, 0);
        conn.write(bad);
      }),
    });
    const c = await connect(s);
    const errs = await threeReads(c);
    expectAllNamed(errs, 'NBD_PROTOCOL', /magic 0xdeadbeef/);
    const after = await rejection(c.read(0, 512));
    expect(after.code).toBe('NBD_CLOSED');
    expect(after.message).toMatch(/magic 0xdeadbeef/);
  });

  it('a reply for an unknown cookie', async () => {
    const s = await serve({
      onRequest: afterRequests(3, (reqs, conn) => {
        const r = reqs[1] as FakeRequest;
        const cookie = Buffer.from(r.cookie);
        cookie.writeUInt32BE(0xabcdef, 4);
        conn.write(goodRead({ ...r, cookie }));
      }),
    });
    const errs = await threeReads(await connect(s));
    expectAllNamed(errs, 'NBD_PROTOCOL', /cookie 11259375, which matches no request in flight/);
  });

  it('a structured chunk outside the requested range', async () => {
    const s = await serve({
      onRequest: afterRequests(3, (reqs, conn) => {
        const r = reqs[2] as FakeRequest;
        conn.write(offsetData(r.cookie, DONE, r.offset + 2048, Buffer.alloc(4096)));
      }),
    });
    const errs = await threeReads(await connect(s));
    expectAllNamed(errs, 'NBD_PROTOCOL', /covers \[133120, 137216\) outside the requested range \[131072, 135168\)/);
  });

  it('overlapping content chunks', async () => {
    const s = await serve({
      onRequest: (r, conn) => {
        conn.write(offsetData(r.cookie, 0, r.offset, Buffer.alloc(3000)));
        conn.write(offsetHole(r.cookie, DONE, r.offset + 2000, 2096));
      },
    });
    const e = await rejection((await connect(s)).read(8192, 4096));
    expect(e.code).toBe('NBD_PROTOCOL');
    expect(e.message).toMatch(/overlaps bytes \[10192, 11192\)/);
  });

  it('success claimed before the whole range was sent', async () => {
    const s = await serve({ onRequest: (r, conn) => conn.write(offsetData(r.cookie, DONE, r.offset, Buffer.alloc(100))) });
    const e = await rejection((await connect(s)).read(0, 4096));
    expect(e.code).toBe('NBD_PROTOCOL');
    expect(e.message).toMatch(/covering only 100 of 4096 bytes/);
  });

  it('a simple reply to a read after structured replies were negotiated', async () => {
    const s = await serve({ onRequest: (r, conn) => conn.write(simpleReply(r.cookie, 0, Buffer.alloc(r.length))) });
    const e = await rejection((await connect(s)).read(0, 4096));
    expect(e.code).toBe('NBD_PROTOCOL');
    expect(e.message).toMatch(/simple reply to NBD_CMD_READ/);
  });

  it('a truncated reply (server closes mid-payload)', async () => {
    const s = await serve({
      onRequest: afterRequests(3, (reqs, conn) => {
        const full = goodRead(reqs[0] as FakeRequest);
        conn.write(full.subarray(0, 20 + 8 + 100));
        setTimeout(() => conn.destroy(), 20);
      }),
    });
    const errs = await threeReads(await connect(s));
    expectAllNamed(errs, 'NBD_CLOSED', /in the middle of the NBD_REPLY_TYPE_OFFSET_DATA payload .*100 of 4096 bytes received.*truncated/);
  });

  it('an unknown non-error reply type', async () => {
    const s = await serve({ onRequest: (r, conn) => conn.write(chunk(r.cookie, DONE, 42, Buffer.alloc(4))) });
    const e = await rejection((await connect(s)).read(0, 4096));
    expect(e.code).toBe('NBD_PROTOCOL');
    expect(e.message).toMatch(/unknown structured reply type 42/);
  });
});

describe('oversized block status replies', () => {
  const script = (answer: (r: FakeRequest, conn: FakeConn) => void): FakeScript => ({
    size: 1 << 30,
    onRequest: answer,
  });

  it('REQ_ONE answered with an extent longer than the request', async () => {
    const s = await serve(script((r, conn) => conn.write(blockStatus(r.cookie, DONE, 1, [[r.length + 4096, 0]]))));
    const c = await connect(s, { metaContexts: ['base:allocation'] });
    const e = await rejection(c.blockStatus('base:allocation', 0, 65536, { reqOne: true }));
    expect(e.code).toBe('NBD_PROTOCOL');
    expect(e.message).toMatch(/oversized block status: the single extent of 69632 bytes/);
    expect(e.message).toContain('offset 0, length 65536');
  });

  it('extents adding up to more than the request', async () => {
    const s = await serve(script((r, conn) => conn.write(blockStatus(r.cookie, DONE, 1, [[r.length, 0], [4096, 1]]))));
    const c = await connect(s, { metaContexts: ['base:allocation'] });
    const e = await rejection(c.blockStatus('base:allocation', 4096, 65536));
    expect(e.code).toBe('NBD_PROTOCOL');
    expect(e.message).toMatch(/oversized block status: 2 extents .* more than the 65536 bytes asked/);
  });

  it('a chunk announcing more than 2^20 extents is refused from its header', async () => {
    const s = await serve(
      script((r, conn) => {
        // Only the header: a client that waited for the 8 MiB payload would hang.
        conn.write(chunk(r.cookie, DONE, 5, Buffer.alloc(0), 4 + 8 * ((1 << 20) + 1)));
      }),
    );
    const c = await connect(s, { metaContexts: ['base:allocation'] });
    const e = await rejection(c.blockStatus('base:allocation', 0, 1 << 30));
    expect(e.code).toBe('NBD_PROTOCOL');
    expect(e.message).toMatch(/oversized NBD_REPLY_TYPE_BLOCK_STATUS chunk of 8388620 bytes/);
  });

  it('a block status chunk for a context that was never negotiated', async () => {
    const s = await serve(script((r, conn) => conn.write(blockStatus(r.cookie, DONE, 7, [[r.length, 0]]))));
    const c = await connect(s, { metaContexts: ['base:allocation'] });
    const e = await rejection(c.blockStatus('base:allocation', 0, 4096));
    expect(e.message).toMatch(/context id 7, which was never negotiated/);
  });
});

describe('server errors fail only their own request', () => {
  it('an NBD_REPLY_TYPE_ERROR chunk (EIO) rejects one read; the others and later reads succeed', async () => {
    const s = await serve({
      onRequest: afterRequests(3, (reqs, conn) => {
        for (const r of reqs) {
          if (r.offset === 65536) conn.write(errorChunk(r.cookie, DONE, 5, 'bad sector'));
          else conn.write(goodRead(r, 0x11));
        }
        s.requests.length = 0;
      }),
    });
    const c = await connect(s);
    const results = await Promise.allSettled(OFFSETS.map((o) => c.read(o, 4096)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = (results[1] as PromiseRejectedResult).reason as NbdServerError;
    expect(err).toBeInstanceOf(NbdServerError);
    expect(err.code).toBe('NBD_SERVER_ERROR');
    expect(err.errno).toBe(5);
    expect(err.errnoName).toBe('EIO');
    expect(err.message).toMatch(/export 'fake'.*offset 65536, length 4096: the server answered EIO: bad sector/);
    expect((results[0] as PromiseFulfilledResult<Buffer>).value).toEqual(Buffer.alloc(4096, 0x11));
  });

  it('an error in a simple reply (no structured replies) rejects only that read', async () => {
    const s = await serve({
      structured: false,
      onRequest: (r, conn) => {
        if (r.offset === 0) conn.write(simpleReply(r.cookie, 22));
        else conn.write(simpleReply(r.cookie, 0, Buffer.alloc(r.length, 7)));
      },
    });
    const c = await connect(s);
    expect(c.structuredReplies).toBe(false);
    const e = (await rejection(c.read(0, 4096))) as NbdServerError;
    expect(e.errnoName).toBe('EINVAL');
    expect(await c.read(4096, 4096)).toEqual(Buffer.alloc(4096, 7));
  });

  it('ESHUTDOWN makes the client disconnect softly, sending nothing new', async () => {
    const s = await serve({ onRequest: (r, conn) => conn.write(errorChunk(r.cookie, DONE, 108, 'going down')) });
    const c = await connect(s, { maxInflight: 1 });
    const [e, q1, q2] = await threeReads(c);
    expect((e as NbdServerError).errnoName).toBe('ESHUTDOWN');
    expect([q1?.code, q2?.code]).toEqual(['NBD_CLOSED', 'NBD_CLOSED']);
    expect(q1?.message).toMatch(/offset 65536, length 4096: the server is shutting down/);
    expect(s.requests.length).toBe(1); // the queued reads were never sent
    const after = await rejection(c.read(0, 4096));
    expect(after.code).toBe('NBD_CLOSED');
    expect(after.message).toMatch(/shutting down|NBD_CMD_DISC/);
  });
});

describe('servers that stop answering', () => {
  it('a request with no reply times out and closes the connection', async () => {
    const s = await serve({ onRequest: () => undefined });
    const c = await connect(s, { requestTimeoutMs: 300 });
    const t0 = Date.now();
    const errs = await threeReads(c);
    expect(Date.now() - t0).toBeLessThan(3000);
    expectAllNamed(errs, 'NBD_TIMEOUT', /no reply from the server within 300 ms/);
  });

  it('a server silent during the handshake times out', async () => {
    const s = await serve({ silent: true, onRequest: () => undefined });
    const t0 = Date.now();
    const e = await rejection(NbdClient.connect(s.target, { requestTimeoutMs: 300 }));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(e.code).toBe('NBD_TIMEOUT');
    expect(e.message).toMatch(/did not answer within 300 ms during the handshake/);
  });

  it('a caller abort abandons one read; its late reply is dropped and the connection stays usable', async () => {
    const s = await serve({
      onRequest: (r, conn) => {
        if (r.offset === 0) setTimeout(() => conn.write(goodRead(r, 0x99)), 300);
        else conn.write(goodRead(r, 0x22));
      },
    });
    const c = await connect(s);
    const dest = Buffer.alloc(4096, 0xee);
    const ac = new AbortController();
    const p = c.readInto(dest, 0, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('user gave up')), 50);
    const e = await rejection(p);
    expect(e.code).toBe('NBD_ABORTED');
    expect(await c.read(4096, 4096)).toEqual(Buffer.alloc(4096, 0x22));
    await new Promise((r) => setTimeout(r, 400)); // the late reply arrives and is discarded
    expect(dest).toEqual(Buffer.alloc(4096, 0xee)); // not written after the abort
    expect(await c.read(8192, 512)).toEqual(Buffer.alloc(512, 0x22));
  });

  it('close() waits for requests in flight, and its signal stops the wait', async () => {
    const s = await serve({ onRequest: () => undefined });
    const c = await NbdClient.connect(s.target, { requestTimeoutMs: 0 }); // no watchdog: would wait forever
    const pending = rejection(c.read(0, 4096));
    const ac = new AbortController();
    const closing = c.close({ signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await closing;
    const e = await pending;
    expect(e.code).toBe('NBD_ABORTED');
    expect(e.message).toMatch(/offset 0, length 4096: closing was aborted by the caller/);
  });

  it('a connection-wide signal tears everything down', async () => {
    const s = await serve({ onRequest: () => undefined });
    const ac = new AbortController();
    const c = await connect(s, { signal: ac.signal });
    const p = threeReads(c);
    setTimeout(() => ac.abort(), 50);
    expectAllNamed(await p, 'NBD_ABORTED', /aborted by the caller/);
  });
});

describe('replies split at arbitrary points', () => {
  it('byte-at-a-time delivery of mixed data/hole chunks reassembles correctly', async () => {
    const s = await serve({
      onRequest: (r, conn) => {
        const half = r.length / 2;
        const bytes = Buffer.concat([
          offsetHole(r.cookie, 0, r.offset + half, half),
          offsetData(r.cookie, DONE, r.offset, Buffer.alloc(half, 0x33)),
        ]);
        let i = 0;
        const drip = (): void => {
          if (i >= bytes.length) return;
          const n = 1 + (i % 7);
          conn.write(bytes.subarray(i, i + n));
          i += n;
          setImmediate(drip);
        };
        drip();
      },
    });
    const c = await connect(s);
    const got = await c.read(0, 2048);
    expect(got).toEqual(Buffer.concat([Buffer.alloc(1024, 0x33), Buffer.alloc(1024, 0)]));
  });
});
