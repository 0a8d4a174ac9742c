// VirshLibvirt: the Libvirt interface implemented by running `virsh -c URI ...` with
// execFile (no shell, so domain names and paths are never interpreted). This is the one
// module in pullback that runs virsh.
//
// virsh runs with LC_ALL=C so its messages can be classified (virsh-errors.ts). XML inputs
// are written to a private temp directory (mode 0700), passed by path, and removed after.
import { execFile } from 'node:child_process';
import type { ExecFileException } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PullbackError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { resolveLibvirtUri } from './libvirt.js';
import type { CallOptions, DomainState, JobInfo, Libvirt, LibvirtVersion, PrefetchQuery } from './libvirt.js';
import { buildBatch, splitBatch, type BatchOutcome } from './virsh-batch.js';
import { SessionFailure, VirshSession } from './virsh-session.js';
import { classifyVirshError, virshErrorLines } from './virsh-errors.js';
import { parseBlockCapacity, parseDomState, parseJobInfo, parseNameList, parseVersion } from './virsh-output.js';

export interface VirshLibvirtOptions {
  /** Connection URI; default from LIBVIRT_DEFAULT_URI, else qemu:///system. */
  uri?: string;
  /** virsh executable; default 'virsh' from PATH. */
  virsh?: string;
  /** Timeout for calls that do not pass one; default 60 s. */
  defaultTimeoutMs?: number;
  /**
   * Run commands through one long-lived interactive virsh (virsh-session.ts) instead of a
   * virsh process per call. Default true, unless PULLBACK_VIRSH_SESSION=0.
   */
  session?: boolean;
}

/** Commands that change nothing: only these may be answered from a prefetch (see run()). */
const READ_ONLY = new Set(['version', 'list', 'domstate', 'dumpxml', 'domblkinfo', 'backup-dumpxml', 'domjobinfo', 'checkpoint-list', 'checkpoint-dumpxml']);

const PREFETCH_TTL_MS = 10_000;

/** backup-begin may wait 30 s for libvirt's state change lock before failing. */
const BACKUP_BEGIN_TIMEOUT_MS = 90_000;

export class VirshLibvirt implements Libvirt {
  readonly uri: string;
  private readonly virsh: string;
  private readonly defaultTimeoutMs: number;
  /**
   * Prefetched answers by argv, each used once; any command that changes state clears them,
   * and an answer older than PREFETCH_TTL_MS is asked again (a long-lived process such as
   * `pullback run` must not act on a stale one).
   */
  private readonly prefetched = new Map<string, BatchOutcome & { at: number }>();
  private readonly session: VirshSession | undefined;

  constructor(opts: VirshLibvirtOptions = {}) {
    this.uri = resolveLibvirtUri(opts.uri);
    this.virsh = opts.virsh ?? 'virsh';
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? 60_000;
    const session = opts.session ?? process.env['PULLBACK_VIRSH_SESSION'] !== '0';
    this.session = session ? new VirshSession(this.virsh, this.uri) : undefined;
  }

  /** Ends the virsh session now (it also ends by itself when idle). */
  close(): void {
    this.session?.close();
  }

  async version(opts: CallOptions = {}): Promise<LibvirtVersion> {
    return parseVersion(await this.run(queryArgs('', 'version'), opts));
  }

  async ping(opts: CallOptions = {}): Promise<void> {
    await this.run(queryArgs('', 'version'), opts);
  }

  async listDomains(opts: CallOptions = {}): Promise<string[]> {
    return parseNameList(await this.run(['list', '--all', '--name'], opts));
  }

  async domainState(domain: string, opts: CallOptions = {}): Promise<DomainState> {
    return parseDomState(await this.run(queryArgs(domain, 'state'), opts));
  }

  async dumpXml(domain: string, opts: CallOptions & { inactive?: boolean } = {}): Promise<string> {
    return this.run(queryArgs(domain, opts.inactive === true ? 'inactiveXml' : 'xml'), opts);
  }

  async define(xml: string, opts: CallOptions = {}): Promise<void> {
    await withTempDir(async (dir) => {
      await this.run(['define', '--file', await writeXml(dir, 'domain.xml', xml)], opts);
    });
  }

  async undefine(domain: string, opts: CallOptions & { checkpointsMetadata?: boolean } = {}): Promise<void> {
    const extra = opts.checkpointsMetadata === true ? ['--checkpoints-metadata'] : [];
    await this.run(['undefine', '--domain', domain, ...extra], opts);
  }

  async blockCapacity(domain: string, target: string, opts: CallOptions = {}): Promise<number> {
    return parseBlockCapacity(await this.run(queryArgs(domain, { capacity: target }), opts), domain, target);
  }

  async start(domain: string, opts: CallOptions = {}): Promise<void> {
    await this.run(['start', '--domain', domain], opts);
  }

  async destroy(domain: string, opts: CallOptions = {}): Promise<void> {
    await this.run(['destroy', '--domain', domain], opts);
  }

  async backupBegin(
    domain: string,
    backupXml: string,
    checkpointXml: string | null,
    opts: CallOptions & { checkActiveJob?: boolean } = {},
  ): Promise<void> {
    if (opts.checkActiveJob !== false) {
      const job = await this.jobInfo(domain, opts);
      if (job.active) {
        throw new PullbackError(
          'DOMAIN_BUSY',
          `cannot start a backup of domain ${domain}: it already has an active ${job.operation ?? 'unknown'} job ` +
            `(libvirt runs one job per domain); wait for it to finish, or if it is a leftover backup end it with ` +
            `'virsh -c ${this.uri} domjobabort ${domain}'`,
        );
      }
    }
    const timeoutMs = opts.timeoutMs ?? Math.max(BACKUP_BEGIN_TIMEOUT_MS, this.defaultTimeoutMs);
    await withTempDir(async (dir) => {
      const args = ['backup-begin', '--domain', domain, '--backupxml', await writeXml(dir, 'backup.xml', backupXml)];
      if (checkpointXml !== null) args.push('--checkpointxml', await writeXml(dir, 'checkpoint.xml', checkpointXml));
      await this.run(args, { ...opts, timeoutMs });
    });
  }

  async backupDumpXml(domain: string, opts: CallOptions = {}): Promise<string> {
    return this.run(['backup-dumpxml', '--domain', domain], opts);
  }

  async jobInfo(domain: string, opts: CallOptions & { completed?: boolean } = {}): Promise<JobInfo> {
    try {
      return parseJobInfo(
        await this.run([...queryArgs(domain, 'job'), ...(opts.completed === true ? ['--completed'] : [])], opts),
      );
    } catch (e) {
      // QEMU keeps job state only while the domain runs: a shut-off domain has no job.
      if (e instanceof PullbackError && e.code === 'DOMAIN_NOT_RUNNING') {
        return { type: 'None', active: false, operation: null, errorMessage: null, fields: { 'Job type': 'None' } };
      }
      throw e;
    }
  }

  async jobAbort(domain: string, opts: CallOptions = {}): Promise<void> {
    await this.run(['domjobabort', '--domain', domain], opts);
  }

  async checkpointList(domain: string, opts: CallOptions = {}): Promise<string[]> {
    return parseNameList(await this.run(queryArgs(domain, 'checkpoints'), opts));
  }

  async checkpointDumpXml(
    domain: string,
    checkpoint: string,
    opts: CallOptions & { noDomain?: boolean; size?: boolean } = {},
  ): Promise<string> {
    const extra = [...(opts.noDomain === true ? ['--no-domain'] : []), ...(opts.size === true ? ['--size'] : [])];
    return this.run(['checkpoint-dumpxml', '--domain', domain, '--checkpointname', checkpoint, ...extra], opts);
  }

  async checkpointCreate(
    domain: string,
    xml: string,
    opts: CallOptions & { redefine?: boolean; validate?: boolean } = {},
  ): Promise<void> {
    const extra = opts.redefine === true ? ['--redefine', ...(opts.validate === true ? ['--redefine-validate'] : [])] : [];
    await withTempDir(async (dir) => {
      const file = await writeXml(dir, 'checkpoint.xml', xml);
      await this.run(['checkpoint-create', '--domain', domain, '--xmlfile', file, ...extra], opts);
    });
  }

  async checkpointDelete(
    domain: string,
    checkpoint: string,
    opts: CallOptions & { metadataOnly?: boolean } = {},
  ): Promise<void> {
    const extra = opts.metadataOnly === true ? ['--metadata'] : [];
    await this.run(['checkpoint-delete', '--domain', domain, '--checkpointname', checkpoint, ...extra], opts);
  }

  async monitorCommand(domain: string, command: string, opts: CallOptions & { hmp?: boolean } = {}): Promise<string> {
    const extra = opts.hmp === true ? ['--hmp'] : [];
    return this.run(['qemu-monitor-command', '--domain', domain, ...extra, '--cmd', command], opts);
  }

  async prefetch(domain: string, queries: readonly PrefetchQuery[], opts: CallOptions = {}): Promise<void> {
    const argvs = queries.map((q) => queryArgs(domain, q));
    // Anything unusual (virsh missing, no connection, killed): cache nothing, and let each
    // call run on its own and report its own error.
    const outcomes = await this.batch(argvs, opts.timeoutMs ?? this.defaultTimeoutMs, opts.signal).catch(() => undefined);
    if (outcomes === undefined) return;
    argvs.forEach((argv, i) => {
      const o = outcomes[i];
      if (o !== undefined) this.prefetched.set(argv.join('\0'), { ...o, at: Date.now() });
    });
  }

  async deleteCheckpoints(domain: string, checkpoints: readonly string[], opts: CallOptions = {}): Promise<Array<PullbackError | null>> {
    const argvs = checkpoints.map((c) => ['checkpoint-delete', '--domain', domain, '--checkpointname', c]);
    if (argvs.length === 0) return [];
    this.prefetched.clear();
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    let errors: Array<PullbackError | null> | undefined;
    if (argvs.length > 1 && opts.signal?.aborted !== true) {
      // A batch that may have started and then failed is not retried step by step: each step
      // then reports the failure (the caller only logs these).
      try {
        errors = (await this.batch(argvs, timeoutMs * argvs.length, opts.signal))?.map((o, i) =>
          this.batchError(argvs[i] ?? [], o, timeoutMs, opts.signal),
        );
      } catch (e) {
        const err = asPullbackError(e);
        errors = argvs.map(() => err);
      }
    }
    // One step alone, or a batch virsh did not start: one call per step, in order.
    if (errors === undefined) {
      errors = [];
      for (const argv of argvs) {
        try {
          await this.run(argv, opts);
          errors.push(null);
        } catch (e) {
          errors.push(asPullbackError(e));
        }
      }
    }
    return errors;
  }

  // ---- plumbing ----

  /** The error of one command of a batch (null when it succeeded), as run() would give it. */
  private batchError(args: readonly string[], o: BatchOutcome, timeoutMs: number, signal: AbortSignal | undefined): PullbackError | null {
    if (virshErrorLines(o.stderr).length === 0) return null;
    const shown = `virsh ${['-q', '-c', this.uri, ...args].map(shellQuote).join(' ')}`;
    const err = Object.assign(new Error(`virsh failed: ${o.stderr.trim()}`), { code: 1 }) as ExecFileException;
    return this.toError(err, shown, o.stderr, timeoutMs, signal);
  }

  /** Runs virsh with `args` and returns stdout; failures become PullbackErrors (see libvirt.ts). */
  private run(args: string[], opts: CallOptions): Promise<string> {
    const argv = ['-q', '-c', this.uri, ...args];
    const shown = `virsh ${argv.map(shellQuote).join(' ')}`;
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    if (opts.signal?.aborted === true) {
      return Promise.reject(new PullbackError('ABORTED', `${shown}: aborted before it started`, { cause: opts.signal.reason }));
    }
    if (!READ_ONLY.has(args[0] ?? '')) {
      this.prefetched.clear();
    } else {
      const key = args.join('\0');
      const hit = this.prefetched.get(key);
      if (hit !== undefined) this.prefetched.delete(key);
      if (hit !== undefined && Date.now() - hit.at <= PREFETCH_TTL_MS) {
        const failed = this.batchError(args, hit, timeoutMs, opts.signal);
        return failed === null ? Promise.resolve(hit.stdout) : Promise.reject(failed);
      }
    }
    if (this.sessionFor([args]) !== undefined) {
      return this.batch([args], timeoutMs, opts.signal).then((outs) => {
        const o = outs?.[0];
        if (o === undefined) return this.runProcess(argv, shown, timeoutMs, opts.signal);
        const failed = this.batchError(args, o, timeoutMs, opts.signal);
        if (failed !== null) throw failed;
        return o.stdout;
      });
    }
    return this.runProcess(argv, shown, timeoutMs, opts.signal);
  }

  /**
   * The session, when it may run `argvs`: it runs one batch at a time, so a call that would
   * wait behind another (calls run concurrently, e.g. a checkpoint's XML fetched while disks
   * are read) gets its own process; so does one with a newline, which would end the
   * session's command line early.
   */
  private sessionFor(argvs: readonly (readonly string[])[]): VirshSession | undefined {
    if (this.session === undefined || this.session.busy) return undefined;
    return argvs.some((a) => a.some((x) => x.includes('\n'))) ? undefined : this.session;
  }

  /** One virsh process for one command. */
  private async runProcess(argv: string[], shown: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<string> {
    const r = await this.exec(argv, timeoutMs, signal);
    if (r.err === null) return r.stdout;
    throw this.toError(r.err, shown, r.stderr, timeoutMs, signal);
  }

  /**
   * Runs `argvs` as one batch: through the session, else in one virsh process. Resolves
   * undefined when virsh never ran the batch (virsh missing, the session could not start):
   * the caller may run the commands one by one. Rejects when the batch may have run and its
   * outcome is unknown (timeout, abort, virsh died mid-way): running it again could repeat
   * a change.
   */
  private async batch(argvs: readonly (readonly string[])[], timeoutMs: number, signal: AbortSignal | undefined): Promise<BatchOutcome[] | undefined> {
    const readOnly = argvs.every((a) => READ_ONLY.has(a[0] ?? ''));
    const shown = `virsh -c ${this.uri} '${argvs.map((a) => a.join(' ')).join(' ; ')}'`;
    const session = this.sessionFor(argvs);
    if (session !== undefined) {
      try {
        return await session.run(argvs, timeoutMs, signal);
      } catch (e) {
        if (!(e instanceof SessionFailure)) throw e;
        if (e.kind === 'aborted' || signal?.aborted === true) throw new PullbackError('ABORTED', `${shown}: aborted`, { cause: e });
        if (e.kind === 'timeout') {
          throw new PullbackError('LIBVIRT_TIMEOUT', `${shown}: no answer within ${timeoutMs} ms; is libvirtd at ${this.uri} hung or overloaded?`, { cause: e });
        }
        // Questions can always be asked again; a change that may have been made cannot.
        if (e.started && !readOnly) throw new PullbackError('VIRSH_FAILED', `${shown}: ${e.message}; the outcome is unknown`, { cause: e });
        return undefined;
      }
    }
    const token = `@@pullback-${process.pid}-${Date.now().toString(36)}`;
    const r = await this.exec(['-q', '-c', this.uri, buildBatch(argvs, token)], timeoutMs, signal);
    return splitBatch(r.stdout, r.stderr, argvs.length, token);
  }

  /** Runs virsh; never rejects: the exit status is the caller's to judge. */
  private exec(argv: string[], timeoutMs: number, signal: AbortSignal | undefined): Promise<{ err: ExecFileException | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        this.virsh,
        argv,
        {
          env: { ...process.env, LC_ALL: 'C' },
          timeout: timeoutMs,
          killSignal: 'SIGKILL',
          maxBuffer: 64 * 1024 * 1024,
          ...(signal === undefined ? {} : { signal }),
        },
        (err, stdout, stderr) => resolve({ err, stdout: String(stdout), stderr: String(stderr) }),
      );
    });
  }

  private toError(
    err: ExecFileException,
    shown: string,
    stderr: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): PullbackError {
    if (signal?.aborted === true) return new PullbackError('ABORTED', `${shown}: aborted`, { cause: err });
    if (err.code === 'ENOENT') {
      return new PullbackError(
        'LIBVIRT_UNAVAILABLE',
        `cannot run ${this.virsh}: not found; install libvirt-clients (virsh)`,
        { cause: err },
      );
    }
    if (err.killed === true) {
      return new PullbackError(
        'LIBVIRT_TIMEOUT',
        `${shown}: no answer within ${timeoutMs} ms; is libvirtd at ${this.uri} hung or overloaded?`,
        { cause: err },
      );
    }
    const lines = virshErrorLines(stderr);
    const detail = lines.length > 0 ? lines.join('; ') : stderr.trim() || err.message;
    const code = classifyVirshError(stderr);
    return new PullbackError(code, `${shown} failed: ${detail}${hint(code, this.uri)}`, { cause: err });
  }
}

/**
 * The argv of a read-only question: the methods ask with it and prefetch stores its answer
 * under it, so the key a prefetched answer is found by is the one the method builds.
 */
function queryArgs(domain: string, q: PrefetchQuery): string[] {
  switch (q) {
    case 'version':
      return ['version'];
    case 'state':
      return ['domstate', '--domain', domain];
    case 'xml':
      return ['dumpxml', '--domain', domain];
    case 'inactiveXml':
      return ['dumpxml', '--domain', domain, '--inactive'];
    case 'job':
      return ['domjobinfo', '--domain', domain];
    case 'checkpoints':
      return ['checkpoint-list', '--domain', domain, '--name', '--topological'];
    default:
      return ['domblkinfo', '--domain', domain, '--device', q.capacity];
  }
}

function asPullbackError(e: unknown): PullbackError {
  return e instanceof PullbackError ? e : new PullbackError('VIRSH_FAILED', String(e), { cause: e });
}

/** Runs `fn` with a fresh private (0700) directory for XML input files, then removes it. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'pullback-virsh-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeXml(dir: string, name: string, xml: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, xml, { mode: 0o600 });
  return path;
}

function hint(code: ErrorCode, uri: string): string {
  switch (code) {
    case 'LIBVIRT_UNAVAILABLE':
      return ` — is libvirtd running and reachable at ${uri}? (pass the URI with --connect or LIBVIRT_DEFAULT_URI)`;
    case 'DOMAIN_NOT_FOUND':
      return ` — see 'virsh -c ${uri} list --all' for the defined domains`;
    case 'DOMAIN_BUSY':
      return ' — another job holds the domain; wait for it to finish or end it with virsh domjobabort';
    case 'DOMAIN_NOT_RUNNING':
      return ' — start the domain first';
    default:
      return '';
  }
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
