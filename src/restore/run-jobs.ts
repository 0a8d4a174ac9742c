// Runs a lazy sequence of pool jobs with at most `window` in flight: the bound on memory and
// on queued work. The first failure (a job error, the pool breaking, or the signal) stops new
// dispatches; the promise settles only after every job already sent has finished, so the
// caller can close or remove the output safely afterwards.
import { PullbackError } from '../errors.js';
import type { RestoreJob, RestorePool } from './worker-pool.js';
import type { RestoreReply } from './worker-protocol.js';

export type JobError = Extract<RestoreReply, { type: 'error' }>;

export interface TaggedJob<T> {
  job: RestoreJob;
  tag: T;
}

export interface RunJobsOptions<T> {
  window: number;
  signal?: AbortSignal;
  onDone?: (bytes: number, tag: T) => void;
  /** Turns a worker's error reply into the error the run fails with. */
  onError: (reply: JobError, tag: T) => Error;
}

export function runJobs<T>(pool: RestorePool, jobs: Iterable<TaggedJob<T>>, opts: RunJobsOptions<T>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const it = jobs[Symbol.iterator]();
    let inFlight = 0;
    let exhausted = false;
    let failure: Error | undefined;
    let settled = false;
    const fail = (e: Error): void => {
      failure ??= e;
    };
    const onAbort = (): void => {
      fail(abortError(opts.signal));
      pump();
    };
    const pump = (): void => {
      while (failure === undefined && !exhausted && inFlight < opts.window) {
        let next: IteratorResult<TaggedJob<T>>;
        try {
          next = it.next();
        } catch (e) {
          fail(e instanceof Error ? e : new Error(String(e)));
          break;
        }
        if (next.done === true) {
          exhausted = true;
          break;
        }
        const { job, tag } = next.value;
        inFlight++;
        pool.run(job).then(
          (r) => {
            inFlight--;
            if (r.type === 'error') fail(opts.onError(r, tag));
            else if (failure === undefined) opts.onDone?.(r.bytes, tag);
            pump();
          },
          (e: unknown) => {
            inFlight--;
            fail(e instanceof Error ? e : new Error(String(e)));
            pump();
          },
        );
      }
      if (!settled && inFlight === 0 && (exhausted || failure !== undefined)) {
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        if (failure !== undefined) reject(failure);
        else resolve();
      }
    };
    if (opts.signal?.aborted === true) {
      fail(abortError(opts.signal));
    } else {
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    }
    pump();
  });
}

export function abortError(signal: AbortSignal | undefined): Error {
  const r: unknown = signal?.reason;
  if (r instanceof PullbackError) return r;
  return new PullbackError('ABORTED', 'restore aborted', r === undefined ? {} : { cause: r });
}
