// Bytes received and not yet consumed, as a list of socket buffers (no copying on arrival).
// The connection takes fixed-size messages (client flags, option and request headers, option
// data) off the front and skips write payloads it will not store.
export class ByteQueue {
  private readonly bufs: Buffer[] = [];
  /** Consumed bytes of bufs[0]. */
  private head = 0;
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.bufs.push(b);
    this.total += b.length;
  }

  /** The next `n` bytes (n <= length), removed from the queue; a view when they lie in one buffer. */
  take(n: number): Buffer {
    if (n > this.total) throw new RangeError(`take(${n}) with only ${this.total} bytes queued`);
    const first = this.bufs[0];
    if (first !== undefined && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const b = this.bufs[0] as Buffer;
      const k = Math.min(n - filled, b.length - this.head);
      b.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.advance(k);
    }
    return out;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    const k = Math.min(n, this.total);
    let left = k;
    while (left > 0) {
      const b = this.bufs[0] as Buffer;
      const step = Math.min(left, b.length - this.head);
      this.advance(step);
      left -= step;
    }
    return k;
  }

  clear(): void {
    this.bufs.length = 0;
    this.head = 0;
    this.total = 0;
  }

  private advance(n: number): void {
    this.head += n;
    this.total -= n;
    const b = this.bufs[0];
    if (b !== undefined && this.head === b.length) {
      this.bufs.shift();
      this.head = 0;
    }
  }
}
