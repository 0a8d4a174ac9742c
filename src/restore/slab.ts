// The restore's shared chunk slots: one block of memory shared by the main thread and every
// restore worker. A worker reads, decompresses and BLAKE3-checks a chunk straight into a slot;
// the main thread writes verified slots to the output (write-disk.ts), adjacent slots in one
// positional writev. So a chunk's plaintext is produced once, in place, and never copied
// between threads.
//
// The block is a shared WebAssembly.Memory because that is the one page-aligned memory a
// Node program can allocate without a native addon (V8 maps it with the OS page allocator;
// Buffer.allocUnsafe sits 16 bytes past a page boundary under glibc). Page alignment lets the
// output be opened O_DIRECT (output.ts): the kernel then DMAs from the slots instead of
// copying every byte into the page cache. Each slot has a 4 KiB head before its data, so a
// stored-raw chunk file can be read with its 12-byte header just before the data and its
// plaintext landing on the aligned data start.
//
// Layout (offsets in the block):
//   [0, ZERO_BYTES)                     zeros, never written: the source of device zero-fill
//   ZERO_BYTES + k * stride             slot k: HEAD bytes of head, then the chunk's data
// stride = HEAD + chunkSize rounded up to ALIGN.

/** Alignment of every slot's data and of the zero region (the largest logical block size). */
export const ALIGN = 4096;
/** Bytes before each slot's data (room for a chunk file's header). */
export const HEAD = 4096;
/** The zero region: device zero-fill writes views of it. */
export const ZERO_BYTES = 1024 * 1024;
const WASM_PAGE = 64 * 1024;

interface WasmMemoryApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => { buffer: SharedArrayBuffer };
}

/** What a worker needs to find the slots (structured-cloneable: the buffer is shared, not copied). */
export interface SlabLayout {
  buffer: SharedArrayBuffer;
  chunkSize: number;
  slots: number;
  stride: number;
}

export function createSlab(chunkSize: number, slots: number): SlabLayout {
  const stride = HEAD + Math.ceil(chunkSize / ALIGN) * ALIGN;
  const pages = Math.ceil((ZERO_BYTES + slots * stride) / WASM_PAGE);
  const wasm = (globalThis as unknown as { WebAssembly: WasmMemoryApi }).WebAssembly;
  const { buffer } = new wasm.Memory({ initial: pages, maximum: pages, shared: true });
  return { buffer, chunkSize, slots, stride };
}

/** Byte offset of slot `k`'s data in the block (ALIGN-aligned). */
export function slotOffset(slab: SlabLayout, k: number): number {
  return ZERO_BYTES + k * slab.stride + HEAD;
}

/** The first `length` bytes of slot `k`'s data. */
export function slotView(slab: SlabLayout, k: number, length: number): Buffer {
  return Buffer.from(slab.buffer, slotOffset(slab, k), length);
}

/** `length` bytes of the zero region, in views of at most ZERO_BYTES each. */
export function zeroViews(slab: SlabLayout, length: number): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < length; o += ZERO_BYTES) out.push(Buffer.from(slab.buffer, 0, Math.min(ZERO_BYTES, length - o)));
  return out;
}
