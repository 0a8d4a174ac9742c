// Guest-visible writes to a test domain's disk, for test/helpers/domain.ts.
//
// Running domain: HMP `qemu-io -d QOM-PATH "CMD"` on the virtio device's own block backend
// (/machine/peripheral/<alias>/virtio-backend), so the write goes through the same block
// graph node as a guest write and every active dirty bitmap records it. HMP answers with an
// empty string even when the qemu-io command fails: qemu-io prints its result ("wrote N/N
// bytes at offset X" or "write failed: ...") on QEMU's stdout, which libvirt logs to
// /var/log/libvirt/qemu/NAME.log (qemu:///system). So we read the log from where it ended
// before the command until the result appears.
//
// Shut-off domain: `qemu-io -f FMT -c CMD IMAGE` on the image itself. Note that QEMU loads a
// qcow2 image's persistent, enabled bitmaps on open, so such writes are recorded too.
//
// qemu-io takes byte offsets and lengths with no alignment requirement (the block layer does
// read-modify-write), up to the disk's virtual size. Its result line starts with "wrote" for
// `write` (also `write -z [-u]`) and with "discard" for `discard`. Its command line is split on spaces,
// so paths must not contain whitespace or quotes.
import { execFile } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Libvirt } from '../../src/libvirt/libvirt.js';

const execFileP = promisify(execFile);

export interface GuestIoTarget {
  libvirt: Libvirt;
  domain: string;
  /** QOM alias of the disk's device, e.g. virtio-disk0 (from the live domain XML). */
  alias: string;
  /** qemu's log of this domain, or null when it cannot be read (non-system URI). */
  logPath: string | null;
}

/** Runs one qemu-io command (e.g. "write -s FILE 0 512", "discard 0 65536") on a running domain's disk. */
export async function qemuIoLive(t: GuestIoTarget, cmd: string, offset: number, length: number): Promise<void> {
  const from = t.logPath === null ? 0 : await sizeOf(t.logPath);
  const qom = `/machine/peripheral/${t.alias}/virtio-backend`;
  const out = await t.libvirt.monitorCommand(t.domain, `qemu-io -d ${qom} "${cmd}"`, { hmp: true });
  if (out.trim() !== '') throw new Error(`qemu-io on ${t.domain} ${t.alias} "${cmd}": ${out.trim()}`);
  if (t.logPath !== null) await confirmInLog(t.logPath, from, resultLine(cmd, offset, length), `${t.domain} ${t.alias} "${cmd}"`);
}

/** Runs one qemu-io command directly on an image that no QEMU has open. */
export async function qemuIoOffline(image: string, format: string, cmd: string, offset: number, length: number): Promise<void> {
  const { stdout } = await execFileP('qemu-io', ['-f', format, '-c', cmd, image]).catch((e: unknown) => {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`qemu-io -f ${format} -c "${cmd}" ${image} failed: ${(err.stderr ?? '') + (err.stdout ?? '') || err.message}`);
  });
  if (!stdout.includes(resultLine(cmd, offset, length))) {
    throw new Error(`qemu-io -f ${format} -c "${cmd}" ${image}: unexpected output: ${stdout.trim()}`);
  }
}

/**
 * Whether [offset, offset + length) of a running domain's disk reads back as zeroes now
 * (`read -P 0`: qemu-io prints "Pattern verification failed ..." before its result line
 * when it does not). Needs the qemu log (qemu:///system).
 */
export async function qemuIoReadsZeroLive(t: GuestIoTarget, offset: number, length: number): Promise<boolean> {
  if (t.logPath === null) throw new Error(`cannot read back ${t.domain}: qemu's log is only known for qemu:///system`);
  const from = await sizeOf(t.logPath);
  const cmd = `read -P 0 ${offset} ${length}`;
  const out = await t.libvirt.monitorCommand(t.domain, `qemu-io -d /machine/peripheral/${t.alias}/virtio-backend "${cmd}"`, { hmp: true });
  if (out.trim() !== '') throw new Error(`qemu-io on ${t.domain} ${t.alias} "${cmd}": ${out.trim()}`);
  const want = `read ${length}/${length} bytes at offset ${offset}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const text = await readFrom(t.logPath, from);
    const end = text.indexOf(want);
    if (end >= 0) return !text.slice(0, end).includes('Pattern verification failed');
    if (Date.now() > deadline) throw new Error(`qemu-io on ${t.domain} ${t.alias} "${cmd}": no result in ${t.logPath} after 10 s`);
    await sleep(5);
  }
}

/** The same for an image no QEMU has open. */
export async function qemuIoReadsZeroOffline(image: string, format: string, offset: number, length: number): Promise<boolean> {
  const cmd = `read -P 0 ${offset} ${length}`;
  // qemu-io exits non-zero when the pattern does not match; its output says which.
  const { stdout } = await execFileP('qemu-io', ['-f', format, '-c', cmd, image]).catch((e: unknown) => e as { stdout?: string });
  const text = stdout ?? '';
  if (!text.includes(`read ${length}/${length} bytes at offset ${offset}`)) throw new Error(`qemu-io -c "${cmd}" ${image}: unexpected output: ${text.trim()}`);
  return !text.includes('Pattern verification failed');
}

function resultLine(cmd: string, offset: number, length: number): string {
  const verb = cmd.startsWith('discard') ? 'discard' : 'wrote';
  return `${verb} ${length}/${length} bytes at offset ${offset}`;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function confirmInLog(path: string, from: number, want: string, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const text = await readFrom(path, from);
    if (text.includes(want)) return;
    // qemu-io's own complaints; libvirt's timestamped lines and QEMU warnings are not ours.
    const failure = text
      .split('\n')
      .find((l) => !/^\d{4}-\d\d-\d\d|warning/.test(l) && /failed|error|not found|No such file|invalid/i.test(l));
    if (failure !== undefined) throw new Error(`qemu-io on ${what} failed: ${failure.trim()}`);
    if (Date.now() > deadline) throw new Error(`qemu-io on ${what}: no result in ${path} after 10 s`);
    await sleep(5);
  }
}

async function readFrom(path: string, from: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const start = size < from ? 0 : from; // rotated by virtlogd: read the new file
    const buf = Buffer.alloc(size - start);
    await fh.read(buf, 0, buf.length, start);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}
