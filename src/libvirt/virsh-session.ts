// One long-lived interactive `virsh -q -c URI` that runs command lines written to its stdin,
// so a run of pullback pays virsh's start-up (40-160 ms of linking and connecting on a busy
// host) once instead of per call. Commands go one batch at a time (virsh-batch.ts marks
// where each command's output starts and ends in both streams).
//
// The session is a cache, never a source of truth: a timeout, an abort, or virsh exiting
// (e.g. libvirtd restarted) kills it and rejects the batch in flight; the next batch starts a
// new one. It ends by itself after `idleMs` without work, and never keeps the process alive.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { batchComplete, buildBatch, splitBatch, type BatchOutcome } from './virsh-batch.js';

/** The session could not answer. `started`: virsh had begun the batch (its outcome is unknown). */
export class SessionFailure extends Error {
  constructor(
    message: string,
    readonly kind: 'timeout' | 'aborted' | 'failed',
    readonly started: boolean,
  ) {
    super(message);
  }
}

interface Proc {
  child: ChildProcessWithoutNullStreams;
  stdout: string;
  stderr: string;
  /** Called on every output chunk and on exit. */
  onChange: (() => void) | undefined;
  exited: boolean;
}

export class VirshSession {
  private proc: Proc | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private idle: NodeJS.Timeout | undefined;
  private counter = 0;
  private pending = 0;

  constructor(
    private readonly virsh: string,
    private readonly uri: string,
    private readonly idleMs = 2000,
  ) {}

  /**
   * Runs `commands` as one batch; resolves with one outcome per command. Rejects with a
   * SessionFailure when the session could not answer (the caller may retry without it).
   */
  run(commands: readonly (readonly string[])[], timeoutMs: number, signal?: AbortSignal): Promise<BatchOutcome[]> {
    this.pending += 1;
    const next = this.queue.then(() => this.runNow(commands, timeoutMs, signal));
    const done = (): void => {
      this.pending -= 1;
    };
    next.then(done, done);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** A batch is running or queued: callers that must not wait behind it go elsewhere. */
  get busy(): boolean {
    return this.pending > 0;
  }

  close(): void {
    if (this.idle !== undefined) clearTimeout(this.idle);
    this.idle = undefined;
    const p = this.proc;
    this.proc = undefined;
    if (p !== undefined && !p.exited) {
      p.child.stdin.end();
      p.child.kill('SIGKILL');
    }
  }

  private start(): Proc {
    const child = spawn(this.virsh, ['-q', '-c', this.uri], { env: { ...process.env, LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
    const p: Proc = { child, stdout: '', stderr: '', onChange: undefined, exited: false };
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      p.stdout += s;
      p.onChange?.();
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      p.stderr += s;
      p.onChange?.();
    });
    const gone = (): void => {
      p.exited = true;
      if (this.proc === p) this.proc = undefined;
      p.onChange?.();
    };
    child.on('exit', gone);
    child.on('error', gone);
    child.stdin.on('error', () => undefined); // EPIPE after an exit: reported through 'exit'
    // Never keep the process alive for the session's sake.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void }).unref?.();
    return p;
  }

  private runNow(commands: readonly (readonly string[])[], timeoutMs: number, signal: AbortSignal | undefined): Promise<BatchOutcome[]> {
    if (this.idle !== undefined) clearTimeout(this.idle);
    this.idle = undefined;
    if (signal?.aborted === true) return Promise.reject(new SessionFailure('aborted before it started', 'aborted', false));
    const p = this.proc ?? this.start();
    this.proc = p;
    this.counter += 1;
    const token = `@@pb${process.pid}x${this.counter}x${Date.now().toString(36)}`;
    p.stdout = '';
    p.stderr = '';
    return new Promise<BatchOutcome[]>((resolve, reject) => {
      const finish = (err: Error | undefined, out?: BatchOutcome[]): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        p.onChange = undefined;
        if (err !== undefined) {
          if (this.proc === p) this.close();
          reject(err);
          return;
        }
        this.idle = setTimeout(() => this.close(), this.idleMs);
        this.idle.unref();
        resolve(out as BatchOutcome[]);
      };
      const started = (): boolean => p.stdout.includes(`${token} s@@`);
      const onAbort = (): void => finish(new SessionFailure('aborted', 'aborted', started()));
      const timer = setTimeout(() => finish(new SessionFailure(`no answer within ${timeoutMs} ms`, 'timeout', started())), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      p.onChange = () => {
        if (batchComplete(p.stdout, p.stderr, commands.length, token)) {
          const out = splitBatch(p.stdout, p.stderr, commands.length, token);
          finish(out === undefined ? new SessionFailure('unparsable output', 'failed', true) : undefined, out);
        } else if (p.exited) {
          finish(new SessionFailure(`virsh exited: ${p.stderr.trim().split('\n').slice(-2).join('; ')}`, 'failed', started()));
        }
      };
      if (p.exited) {
        p.onChange();
        return;
      }
      p.child.stdin.write(`${buildBatch(commands, token)}\n`);
    });
  }
}
