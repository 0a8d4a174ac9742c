// A byte-level NBD client for protocol tests: it sends whatever the test builds (correct or
// not, with the codecs of src/nbd) and reads exact byte counts back, so tests can check the
// server's every reply and that it hangs up when the spec says it may. Test-only.
import net from 'node:net';
import {
  encodeExportNameData,
  encodeGoData,
  encodeMetaContextData,
  encodeOption,
} from '../../src/nbd/option-codec.js';
import { encodeRequest } from '../../src/nbd/request-codec.js';

export class RawClient {
  private buf = Buffer.alloc(0);
  private ended = false;
  private waiter: (() => void) | undefined;
  readonly socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (b: Buffer) => {
      this.buf = Buffer.concat([this.buf, b]);
      this.waiter?.();
    });
    const end = (): void => {
      this.ended = true;
      this.waiter?.();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  static connect(socketPath: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Exactly n bytes, or throws if the server hangs up first or nothing comes within timeoutMs. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`server closed the connection with ${this.buf.length} of ${n} bytes received`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves true once the server has closed the connection (false after timeoutMs). */
  async closedByServer(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.ended;
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---- handshake helpers

  /** Reads the 18-byte greeting and sends client flags. */
  async greet(clientFlags = 3): Promise<{ handshakeFlags: number }> {
    const hello = await this.read(18);
    if (hello.toString('latin1', 0, 16) !== 'NBDMAGICIHAVEOPT') throw new Error(`bad greeting ${hello.toString('hex')}`);
    const f = Buffer.alloc(4);
    f.writeUInt32BE(clientFlags >>> 0, 0);
    this.write(f);
    return { handshakeFlags: hello.readUInt16BE(16) };
  }

  option(option: number, data: Buffer = Buffer.alloc(0)): void {
    this.write(encodeOption(option, data));
  }

  /** One option reply: header fields and payload. */
  async optionReply(): Promise<{ option: number; type: number; payload: Buffer }> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error(`bad option reply magic ${h.toString('hex', 0, 8)}`);
    const length = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), payload: Buffer.from(await this.read(length)) };
  }

  /** Option replies up to and including the first non-intermediate one (ACK or an error). */
  async optionReplies(): Promise<Array<{ option: number; type: number; payload: Buffer }>> {
    const out = [];
    for (;;) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type === 1 || (r.type & 0x80000000) !== 0) return out;
    }
  }

  static goData = encodeGoData;
  static metaData = encodeMetaContextData;
  static exportNameData = encodeExportNameData;

  /** STRUCTURED_REPLY, SET_META_CONTEXT base:allocation, GO: the usual modern handshake. */
  async handshake(exportName: string, opts: { structured?: boolean; contexts?: string[] } = {}): Promise<{ size: number; flags: number }> {
    await this.greet();
    if (opts.structured !== false) {
      this.option(8);
      await this.optionReplies();
      this.option(10, encodeMetaContextData(exportName, opts.contexts ?? ['base:allocation']));
      await this.optionReplies();
    }
    this.option(7, encodeGoData(exportName, [3]));
    let size = -1;
    let flags = -1;
    for (const r of await this.optionReplies()) {
      if (r.type === 3 && r.payload.readUInt16BE(0) === 0) {
        size = Number(r.payload.readBigUInt64BE(2));
        flags = r.payload.readUInt16BE(10);
      }
      if ((r.type & 0x80000000) !== 0) throw new Error(`NBD_OPT_GO failed: ${r.payload.toString()}`);
    }
    return { size, flags };
  }

  // ---- transmission helpers

  request(type: number, offset: number, length: number, opts: { flags?: number; cookie?: number } = {}): void {
    this.write(encodeRequest(opts.flags ?? 0, type, opts.cookie ?? 1, offset, length));
  }

  /** A structured chunk: header fields and payload. */
  async chunk(): Promise<{ flags: number; type: number; cookie: number; payload: Buffer }> {
    const h = await this.read(20);
    if (h.readUInt32BE(0) !== 0x668e33ef) throw new Error(`expected a structured reply, got magic 0x${h.readUInt32BE(0).toString(16)}`);
    const length = h.readUInt32BE(16);
    return { flags: h.readUInt16BE(4), type: h.readUInt16BE(6), cookie: h.readUInt32BE(12), payload: Buffer.from(await this.read(length)) };
  }

  /** Chunks until the one flagged NBD_REPLY_FLAG_DONE. */
  async chunks(): Promise<Array<{ flags: number; type: number; cookie: number; payload: Buffer }>> {
    const out = [];
    for (;;) {
      const c = await this.chunk();
      out.push(c);
      if ((c.flags & 1) !== 0) return out;
    }
  }

  /** A simple reply header: error and cookie. */
  async simple(): Promise<{ error: number; cookie: number }> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error(`expected a simple reply, got magic 0x${h.readUInt32BE(0).toString(16)}`);
    return { error: h.readUInt32BE(4), cookie: h.readUInt32BE(12) };
  }
}
