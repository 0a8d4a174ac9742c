// Which bytes of a read request the server's content chunks have covered so far.
// proto.md (NBD_CMD_READ, structured replies): chunks MUST lie within the request and MUST NOT
// overlap earlier content or error chunks; success means the request is fully covered.
// Intervals are kept sorted and merged, so the common in-order case stays O(1).
export class Coverage {
  private starts: number[] = [];
  private ends: number[] = [];
  covered = 0;

  constructor(
    readonly offset: number,
    readonly length: number,
  ) {}

  /** Records [start, start+len); returns a reason string if it breaks the rules, else null. */
  add(start: number, len: number): string | null {
    const end = start + len;
    if (start < this.offset || end > this.offset + this.length) {
      return `covers [${start}, ${end}) outside the requested range [${this.offset}, ${this.offset + this.length})`;
    }
    const n = this.starts.length;
    // Fast path: strictly after everything seen so far.
    const lastEnd = n > 0 ? (this.ends[n - 1] as number) : -1;
    if (start >= lastEnd) {
      if (start === lastEnd) this.ends[n - 1] = end;
      else {
        this.starts.push(start);
        this.ends.push(end);
      }
      this.covered += len;
      return null;
    }
    // Binary search: first interval whose end is > start.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ends[mid] as number) > start) hi = mid;
      else lo = mid + 1;
    }
    if (lo < n && (this.starts[lo] as number) < end) {
      return `overlaps bytes [${Math.max(start, this.starts[lo] as number)}, ${Math.min(end, this.ends[lo] as number)}) already sent in this reply`;
    }
    this.starts.splice(lo, 0, start);
    this.ends.splice(lo, 0, end);
    this.covered += len;
    return null;
  }

  get complete(): boolean {
    return this.covered === this.length;
  }
}
