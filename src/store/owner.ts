// Who holds a lock or runs a backup, and whether that process is still alive. A bare pid is
// not enough: pids are reused, and the machine may have rebooted since. An owner is
// (host, boot id, pid, process start time from /proc/<pid>/stat field 22); on the same host a
// differing boot id, a missing pid or a differing start time all prove the owner dead. An
// owner on another host cannot be probed and is treated as alive.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface Owner {
  host: string;
  bootId: string;
  pid: number;
  /** Start time in clock ticks since boot, '' where /proc is unavailable. */
  start: string;
}

function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** Field 22 (starttime) of /proc/<pid>/stat; the comm field may contain spaces and ')'. */
export function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? '';
  } catch {
    return undefined;
  }
}

let self: Owner | undefined;

export function currentOwner(): Owner {
  self ??= { host: hostname(), bootId: readBootId(), pid: process.pid, start: procStart(process.pid) ?? '' };
  return self;
}

export type Liveness = 'alive' | 'dead' | 'unknown';

export function liveness(o: Owner): Liveness {
  const me = currentOwner();
  if (o.host !== me.host) return 'unknown';
  if (o.bootId !== '' && me.bootId !== '' && o.bootId !== me.bootId) return 'dead';
  try {
    process.kill(o.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return 'dead';
  }
  const start = procStart(o.pid);
  if (start === undefined) return existsProc() ? 'dead' : 'alive';
  if (o.start !== '' && start !== o.start) return 'dead';
  return 'alive';
}

function existsProc(): boolean {
  return procStart(process.pid) !== undefined;
}

export function describeOwner(o: Owner): string {
  return `pid ${o.pid} on host ${o.host}`;
}

export function parseOwner(json: string | null | undefined): Owner | undefined {
  if (json === null || json === undefined || json === '') return undefined;
  try {
    const o = JSON.parse(json) as Partial<Owner>;
    if (typeof o.host !== 'string' || typeof o.pid !== 'number') return undefined;
    return { host: o.host, pid: o.pid, bootId: o.bootId ?? '', start: o.start ?? '' };
  } catch {
    return undefined;
  }
}
