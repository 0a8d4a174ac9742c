// Throwaway libvirt domains for integration tests: a q35 machine that boots no OS, 64 MiB
// memory, no graphics, virtio disks vda, vdb, ... backed by qcow2 (or raw) files in a temp
// directory. `type='kvm'` when /dev/kvm exists, else 'qemu' (TCG). A started domain is
// paused at once (its vCPU would only spin): "running" below means active, running or paused.
//
// Terms: each disk has a *reference*, a sparse raw file holding exactly what the guest should
// read from the disk now; every write through this helper goes to both, so tests compare a
// backup or restore against `referenceSha256` / `snapshotReferences`. Writes are real guest
// writes (guest-io.ts), so dirty bitmaps of checkpoints see them. Only write through this
// helper, or the reference goes stale.
//
// Discard (`discard`) is advisory in QEMU, and what it zeroes depends on the image format
// (measured with qemu-io and qemu-img convert, QEMU 7.2): a qcow2 image (v3, no backing file,
// 64 KiB clusters) drops only the whole clusters inside the range, plus the partial cluster at
// the end of a disk whose size is not a cluster multiple when the range reaches the disk's
// end; those read back as zeroes, every other byte of the range keeps its data. A raw image
// punches a hole in its file for exactly the range (reads back as zeroes). And while a
// backup job's copy-before-write filter sits on the disk, QEMU drops a guest discard
// altogether (the filter node is not opened with discard=unmap): the data stays. So after a
// discard the helper reads the range it would zero back from the disk (qemu-io `read -P 0`):
// zeroes → the reference zeroes that range; anything else → the discard was dropped and the
// reference keeps its data (if a discard did something else, the next comparison of the
// disk with its reference shows it).
//
// Disk sizes must be positive multiples of 512 bytes (QEMU rounds image sizes up to whole
// sectors; anything else would make the disk larger than its reference). They need not be
// multiples of the 64 KiB qcow2 cluster; the last byte of a disk is writable.
//
// Ownership: the domain's <description> records the creating process id and directory, so
// cleanupStaleTestDomains (run once per process by the first createTestDomain) removes
// domains of dead processes only, never those of a test running in parallel.
//
//   const dom = await createTestDomain({ disks: 2 });          // running, vda + vdb, 64 MiB
//   afterAll(() => dom.destroy());
//   await dom.writeRandom('vda', 4096, 65536, 1);              // guest write, bitmap sees it
//   expect(sha256 of restored vda).toBe(await dom.referenceSha256('vda'));
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isPullbackError } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import { parseDomainXml } from '../../src/libvirt/domain-xml.js';
import type { Libvirt } from '../../src/libvirt/libvirt.js';
import { VirshLibvirt } from '../../src/libvirt/virsh.js';
import { el, serializeXml } from '../../src/libvirt/xml-tree.js';
import { qemuIoLive, qemuIoOffline, qemuIoReadsZeroLive, qemuIoReadsZeroOffline } from './guest-io.js';
import { seededBytes } from './seeded-random.js';
import { cleanupStaleTestDomains, ignoring, ownerMarker, TEST_DOMAIN_PREFIX } from './stale-domains.js';

export { cleanupStaleTestDomains, TEST_DOMAIN_PREFIX };

const execFileP = promisify(execFile);

const MiB = 1024 * 1024;
/** The qcow2 cluster size the helper creates images with (QEMU's default, made explicit). */
export const QCOW2_CLUSTER = 64 * 1024;

export interface TestDomainOptions {
  /** Default: unique 'pbtest-<random>'. */
  name?: string;
  disks: number | Array<{ size: number; format?: 'qcow2' | 'raw' }>;
  /** Size of each disk when `disks` is a number; default 64 MiB. */
  diskSize?: number;
  /** Start the domain after defining it; default true. */
  start?: boolean;
  /** Directory for images and references; default a fresh temp dir (removed by destroy). */
  dir?: string;
}

export interface TestDomainDisk {
  target: string;
  path: string;
  size: number;
  format: 'qcow2' | 'raw';
}

export interface TestDomain {
  readonly name: string;
  readonly uri: string;
  readonly dir: string;
  readonly disks: TestDomainDisk[];
  /** The runner the helper uses (same URI), for tests that need more libvirt calls. */
  readonly libvirt: Libvirt;
  write(target: string, offset: number, data: Buffer): Promise<void>;
  writeZeroes(target: string, offset: number, length: number, opts?: { unmap?: boolean }): Promise<void>;
  /**
   * Guest discard (TRIM/UNMAP) of the range; the reference zeroes what the format drops, when
   * QEMU did not drop the discard itself (header). Says which: 'zeroed', 'dropped', or
   * 'nothing' (no whole cluster in the range).
   */
  discard(target: string, offset: number, length: number): Promise<'zeroed' | 'dropped' | 'nothing'>;
  /** Writes random bytes (deterministic when `seed` is given) and returns them. */
  writeRandom(target: string, offset: number, length: number, seed?: number): Promise<Buffer>;
  reference(target: string): string;
  referenceSha256(target: string): Promise<string>;
  /** Copies every reference (sparse/reflink) and returns target → copy path. */
  snapshotReferences(label: string): Promise<Record<string, string>>;
  start(): Promise<void>;
  /** Powers off at once (there is no OS to shut down). */
  shutdown(): Promise<void>;
  isRunning(): Promise<boolean>;
  /** Destroys, undefines (with checkpoint metadata) and removes files; idempotent. */
  destroy(): Promise<void>;
}

let staleSweepDone = false;

export async function createTestDomain(opts: TestDomainOptions): Promise<TestDomain> {
  if (!staleSweepDone) {
    staleSweepDone = true;
    await cleanupStaleTestDomains().catch((e: unknown) => console.warn(`stale test domain sweep failed: ${String(e)}`));
  }
  const name = opts.name ?? `${TEST_DOMAIN_PREFIX}${randomBytes(5).toString('hex')}`;
  if (!/^[\w.+-]+$/.test(name)) throw new Error(`test domain name '${name}' must be [A-Za-z0-9_.+-]`);
  const specs = diskSpecs(opts);
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), `${name}-`)));
  if (/[\s"'\\]/.test(dir)) throw new Error(`test domain dir '${dir}' must not contain whitespace or quotes (qemu-io)`);
  if (!ownsDir) await mkdir(dir, { recursive: true });
  const libvirt = new VirshLibvirt();
  const disks = specs.map((s, i) => {
    const target = targetName(i);
    return { target, path: join(dir, `${name}-${target}.${s.format}`), size: s.size, format: s.format };
  });
  const domain = new Domain(libvirt, name, dir, ownsDir, disks);
  try {
    await domain.track(join(dir, `${name}.owner.json`), JSON.stringify({ pid: process.pid, name }));
    for (const d of disks) await domain.createDisk(d);
    await libvirt.define(domainXml(name, dir, ownsDir, disks));
    domain.defined = true;
    if (opts.start !== false) await domain.start();
    return domain;
  } catch (e) {
    await domain.destroy().catch(() => undefined);
    throw e;
  }
}

function diskSpecs(opts: TestDomainOptions): Array<{ size: number; format: 'qcow2' | 'raw' }> {
  const list =
    typeof opts.disks === 'number'
      ? Array.from({ length: opts.disks }, () => ({ size: opts.diskSize ?? 64 * MiB, format: 'qcow2' as const }))
      : opts.disks.map((d) => ({ size: d.size, format: d.format ?? ('qcow2' as const) }));
  if (list.length === 0) throw new Error('a test domain needs at least one disk');
  for (const d of list) {
    if (!Number.isSafeInteger(d.size) || d.size <= 0 || d.size % 512 !== 0) {
      throw new Error(`test disk size ${d.size} must be a positive multiple of 512 bytes`);
    }
  }
  return list;
}

/** vda..vdz, vdaa..vdaz, ... like libvirt's own naming. */
function targetName(i: number): string {
  let s = '';
  for (let n = i; n >= 0; n = Math.floor(n / 26) - 1) s = String.fromCharCode(97 + (n % 26)) + s;
  return `vd${s}`;
}

function domainXml(name: string, dir: string, ownsDir: boolean, disks: TestDomainDisk[]): string {
  const type = existsSync('/dev/kvm') ? 'kvm' : 'qemu';
  const root = el('domain', { type }, [
    el('name', {}, name),
    el('description', {}, ownerMarker(dir, ownsDir)),
    el('memory', { unit: 'MiB' }, '64'),
    el('vcpu', {}, '1'),
    el('os', {}, [el('type', { arch: 'x86_64', machine: 'q35' }, 'hvm')]),
    el('on_poweroff', {}, 'destroy'),
    el('on_reboot', {}, 'destroy'),
    el('on_crash', {}, 'destroy'),
    el('devices', {}, [
      ...disks.map((d) =>
        el('disk', { type: 'file', device: 'disk' }, [
          el('driver', { name: 'qemu', type: d.format, discard: 'unmap' }),
          el('source', { file: d.path }),
          el('target', { dev: d.target, bus: 'virtio' }),
        ]),
      ),
      el('memballoon', { model: 'none' }),
    ]),
  ]);
  return serializeXml({ prolog: [], root }, { indent: true });
}

class Domain implements TestDomain {
  readonly uri: string;
  private queue: Promise<unknown> = Promise.resolve();
  private aliases: Map<string, string> | null = null;
  private readonly created: string[] = [];
  /** False until our define succeeded: a half-created domain must not touch a same-named one. */
  defined = false;

  constructor(
    readonly libvirt: Libvirt,
    readonly name: string,
    readonly dir: string,
    private readonly ownsDir: boolean,
    readonly disks: TestDomainDisk[],
  ) {
    this.uri = libvirt.uri;
  }

  /** Writes a file we own (removed by destroy). */
  async track(path: string, content: string | Buffer): Promise<void> {
    this.created.push(path);
    await writeFile(path, content);
  }

  async createDisk(d: TestDomainDisk): Promise<void> {
    this.created.push(d.path, this.reference(d.target));
    if (d.format === 'qcow2') {
      await execFileP('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${QCOW2_CLUSTER}`, d.path, String(d.size)]);
    }
    else await sparseFile(d.path, d.size);
    await sparseFile(this.reference(d.target), d.size);
  }

  async write(target: string, offset: number, data: Buffer): Promise<void> {
    const disk = this.checkedDisk(target, offset, data.length);
    if (data.length === 0) return;
    await this.serialized(async () => {
      const file = join(this.dir, `${this.name}-io-${target}.bin`);
      await writeFile(file, data);
      try {
        await this.qemuIo(disk, `write -s ${file} ${offset} ${data.length}`, offset, data.length);
      } finally {
        await rm(file, { force: true });
      }
      const fh = await open(this.reference(target), 'r+');
      try {
        await fh.write(data, 0, data.length, offset);
      } finally {
        await fh.close();
      }
    });
  }

  async writeZeroes(target: string, offset: number, length: number, opts: { unmap?: boolean } = {}): Promise<void> {
    const disk = this.checkedDisk(target, offset, length);
    if (length === 0) return;
    await this.serialized(async () => {
      await this.qemuIo(disk, `write -z${opts.unmap === true ? ' -u' : ''} ${offset} ${length}`, offset, length);
      // Punching a hole reads back as zeroes and keeps the reference sparse.
      await execFileP('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), this.reference(target)]);
    });
  }

  async discard(target: string, offset: number, length: number): Promise<'zeroed' | 'dropped' | 'nothing'> {
    const disk = this.checkedDisk(target, offset, length);
    if (length === 0) return 'nothing';
    return await this.serialized(async () => {
      await this.qemuIo(disk, `discard ${offset} ${length}`, offset, length);
      const [from, to] = discardedRange(disk, offset, length);
      if (to <= from) return 'nothing';
      if (!(await this.readsZero(disk, from, to - from))) return 'dropped';
      await execFileP('fallocate', ['--punch-hole', '--offset', String(from), '--length', String(to - from), this.reference(target)]);
      return 'zeroed';
    });
  }

  async writeRandom(target: string, offset: number, length: number, seed?: number): Promise<Buffer> {
    const data = seed === undefined ? randomBytes(length) : seededBytes(seed, length);
    await this.write(target, offset, data);
    return data;
  }

  reference(target: string): string {
    this.disk(target);
    return join(this.dir, `${this.name}-${target}.reference.raw`);
  }

  referenceSha256(target: string): Promise<string> {
    return this.serialized(() => sha256File(this.reference(target)));
  }

  async snapshotReferences(label: string): Promise<Record<string, string>> {
    if (!/^[\w.-]+$/.test(label)) throw new Error(`snapshot label '${label}' must be [A-Za-z0-9_.-]`);
    return await this.serialized(async () => {
      const out: Record<string, string> = {};
      for (const d of this.disks) {
        const copy = join(this.dir, `${this.name}-${d.target}.snap-${label}.raw`);
        this.created.push(copy);
        await execFileP('cp', ['--reflink=auto', '--sparse=always', this.reference(d.target), copy]);
        out[d.target] = copy;
      }
      return out;
    });
  }

  async start(): Promise<void> {
    this.aliases = null;
    await this.libvirt.start(this.name);
    // With no OS to boot the vCPU spins at ~a whole core (bench/idle-vcpu.ts), which on this
    // 2-core machine slows every test running beside it: pause it. QEMU's block layer, NBD
    // exports, HMP qemu-io and dirty bitmaps work as before, and libvirt and pullback treat a
    // paused domain as running (isRunning() too).
    await execFileP('virsh', ['-q', '-c', this.uri, 'suspend', this.name]);
  }

  async shutdown(): Promise<void> {
    this.aliases = null;
    await ignoring(['DOMAIN_NOT_RUNNING'], () => this.libvirt.destroy(this.name));
  }

  async isRunning(): Promise<boolean> {
    const state = await this.libvirt.domainState(this.name);
    return state !== 'shut off' && state !== 'crashed' && state !== 'no state';
  }

  async destroy(): Promise<void> {
    await this.queue.catch(() => undefined);
    const problems: string[] = [];
    const step = async (what: string, codes: ErrorCode[], fn: () => Promise<unknown>): Promise<void> => {
      try {
        await ignoring(codes, fn);
      } catch (e) {
        problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
      }
    };
    if (this.defined) {
      await step('destroy', ['DOMAIN_NOT_RUNNING', 'DOMAIN_NOT_FOUND'], () => this.libvirt.destroy(this.name));
      await step('undefine', ['DOMAIN_NOT_FOUND'], () => this.libvirt.undefine(this.name, { checkpointsMetadata: true }));
    }
    if (this.ownsDir) await step('remove dir', [], () => rm(this.dir, { recursive: true, force: true }));
    else for (const f of this.created) await step(`remove ${f}`, [], () => rm(f, { force: true }));
    if (problems.length > 0) throw new Error(`destroying test domain ${this.name}: ${problems.join('; ')}`);
  }

  // ---- internals ----

  private disk(target: string): TestDomainDisk {
    const d = this.disks.find((x) => x.target === target);
    if (d === undefined) throw new Error(`test domain ${this.name} has no disk ${target}`);
    return d;
  }

  private checkedDisk(target: string, offset: number, length: number): TestDomainDisk {
    const d = this.disk(target);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > d.size) {
      throw new Error(`write of ${length} bytes at ${offset} is outside disk ${target} (${d.size} bytes) of ${this.name}`);
    }
    return d;
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Live path when QEMU runs (no separate state query: one virsh call per write), else offline. */
  private async qemuIo(disk: TestDomainDisk, cmd: string, offset: number, length: number): Promise<void> {
    const alias = (await this.liveAliases()).get(disk.target);
    if (alias !== undefined) {
      const logPath = this.uri === 'qemu:///system' ? `/var/log/libvirt/qemu/${this.name}.log` : null;
      try {
        await qemuIoLive({ libvirt: this.libvirt, domain: this.name, alias, logPath }, cmd, offset, length);
        return;
      } catch (e) {
        if (!isPullbackError(e, 'DOMAIN_NOT_RUNNING')) throw e;
        this.aliases = null; // shut off behind our back
      }
    }
    await qemuIoOffline(disk.path, disk.format, cmd, offset, length);
  }

  /** Whether the range reads back as zeroes from the disk now (live or offline, like qemuIo). */
  private async readsZero(disk: TestDomainDisk, offset: number, length: number): Promise<boolean> {
    const alias = (await this.liveAliases()).get(disk.target);
    if (alias !== undefined) {
      const logPath = this.uri === 'qemu:///system' ? `/var/log/libvirt/qemu/${this.name}.log` : null;
      try {
        return await qemuIoReadsZeroLive({ libvirt: this.libvirt, domain: this.name, alias, logPath }, offset, length);
      } catch (e) {
        if (!isPullbackError(e, 'DOMAIN_NOT_RUNNING')) throw e;
        this.aliases = null;
      }
    }
    return await qemuIoReadsZeroOffline(disk.path, disk.format, offset, length);
  }

  /** target → device alias from the live XML; empty while shut off (then not cached). */
  private async liveAliases(): Promise<Map<string, string>> {
    if (this.aliases !== null) return this.aliases;
    const info = parseDomainXml(await this.libvirt.dumpXml(this.name));
    const map = new Map(info.disks.flatMap((d) => (d.alias === null ? [] : [[d.target, d.alias] as const])));
    if (info.id !== null) this.aliases = map;
    return map;
  }
}

/** [from, to): the bytes a discard of [offset, offset + length) turns into zeroes (header). */
export function discardedRange(disk: Pick<TestDomainDisk, 'format' | 'size'>, offset: number, length: number): [number, number] {
  const end = offset + length;
  if (disk.format === 'raw') return [offset, end];
  const c = QCOW2_CLUSTER;
  const from = Math.ceil(offset / c) * c;
  const to = end === disk.size ? end : Math.floor(end / c) * c;
  return [from, Math.max(from, to)];
}

async function sparseFile(path: string, size: number): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
