// Bad repositories through the built CLI (bin/pullback): each gives one line on stderr naming
// the problem and what to do, a non-zero exit, and never a stack trace.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tempDir } from './helpers.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/pullback', import.meta.url).pathname;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], opts: { asNobody?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  const [cmd, argv] = opts.asNobody === true
    ? ['setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', BIN, ...args]]
    : [BIN, args];
  try {
    const r = await run(cmd as string, argv as string[], { env: { ...process.env, PULLBACK_REPO: '', ...opts.env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Exactly one line, the project's error format, no stack. */
function expectOneLineError(r: Result, code: string, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`^pullback: error \\[${code}\\]: .*\\n$`));
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

let t: ReturnType<typeof tempDir>;
let good: string;

beforeAll(async () => {
  t = tempDir();
  chmodSync(t.dir, 0o755); // let the unprivileged user reach into it
  good = join(t.dir, 'good');
  const r = await cli(['init', '--repo', good, '--chunk-size', '256K', '--compression', 'zstd:5']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toBe(`created repository ${good}: chunk size 256 KiB, hash blake3, compression zstd:5\n`);
  expect(JSON.parse(readFileSync(join(good, 'config.json'), 'utf8'))).toEqual({
    formatVersion: 1, chunkSize: 262144, hash: 'blake3', compression: { algorithm: 'zstd', level: 5 },
  });
});
afterAll(() => t.cleanup());

describe('bad repositories', () => {
  test('no repository given at all is a usage error', async () => {
    const r = await cli(['check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('pullback: no repository given: pass --repo DIR or set PULLBACK_REPO\n');
  });

  test('PULLBACK_REPO is honoured', async () => {
    const r = await cli(['check'], { env: { PULLBACK_REPO: good } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('repository OK');
  });

  test('missing', async () => {
    expectOneLineError(await cli(['check', '--repo', join(t.dir, 'nope')]), 'REPO_NOT_FOUND', /no repository at .*nope: create one with `pullback init/);
  });

  test('a file', async () => {
    const f = join(t.dir, 'file');
    writeFileSync(f, 'x');
    expectOneLineError(await cli(['gc', '--repo', f]), 'REPO_INVALID', /file is a file, not a repository directory/);
    expectOneLineError(await cli(['init', '--repo', f]), 'REPO_EXISTS', /it is a file, not a directory/);
  });

  test('a directory that is not a repository; init into a non-empty directory', async () => {
    const d = join(t.dir, 'plain');
    mkdirSync(d);
    writeFileSync(join(d, 'x'), 'x');
    expectOneLineError(await cli(['check', '--repo', d]), 'REPO_INVALID', /not a pullback repository \(no config.json\)/);
    expectOneLineError(await cli(['init', '--repo', d]), 'REPO_EXISTS', /not empty/);
    expectOneLineError(await cli(['init', '--repo', good]), 'REPO_EXISTS', /already holds a pullback repository/);
  });

  test('not writable (as an unprivileged user)', async () => {
    const r = await cli(['gc', '--repo', good], { asNobody: true });
    expectOneLineError(r, 'REPO_IO', /repository .*good is not writable \(.*EACCES\): check its permissions/);
  });

  test('newer format version', async () => {
    const d = join(t.dir, 'future');
    expect((await cli(['init', '--repo', d])).code).toBe(0);
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, formatVersion: 99 }));
    expectOneLineError(await cli(['check', '--repo', d]), 'REPO_VERSION', /format version 99, but this pullback supports only up to 1: upgrade pullback/);
  });

  test('corrupt config', async () => {
    const d = join(t.dir, 'badcfg');
    expect((await cli(['init', '--repo', d])).code).toBe(0);
    writeFileSync(join(d, 'config.json'), '{"formatVersion": 1, "chunkSize": 1000');
    expectOneLineError(await cli(['check', '--repo', d]), 'REPO_INVALID', /config.json is not valid JSON/);
    writeFileSync(join(d, 'config.json'), '{"formatVersion": 1, "chunkSize": 1000, "hash": "blake3", "compression": {"algorithm": "zstd", "level": 3}}');
    expectOneLineError(await cli(['check', '--repo', d]), 'REPO_INVALID', /config.json is not a valid pullback repository config: chunk size 1000 is invalid/);
  });

  test('corrupt database', async () => {
    const d = join(t.dir, 'baddb');
    expect((await cli(['init', '--repo', d])).code).toBe(0);
    writeFileSync(join(d, 'index.db'), 'this is not an sqlite database, just some text that is long enough to have a header'.repeat(100));
    for (const cmd of ['check', 'gc']) {
      expectOneLineError(await cli([cmd, '--repo', d]), 'REPO_CORRUPT', /index database .*index\.db is unreadable \(file is not a database\); rebuild it from the chunk storage with `pullback repair --rebuild-index`/);
    }
  });

  test('bad option values are usage errors', async () => {
    // The parsers themselves are covered in config.test.ts; here: how the CLI reports them.
    for (const [args, msg] of [
      [['--chunk-size', '3M'], /chunk size 3145728 is invalid: it must be a power of two from 64 KiB to 16 MiB/],
      [['--compression', 'gzip:9'], /cannot parse compression "gzip:9": use zstd:LEVEL/],
    ] as const) {
      const r = await cli(['init', '--repo', join(t.dir, 'never'), ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.split('\n')).toHaveLength(2);
    }
    const r = await cli(['repair', '--repo', good]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('pullback: repair needs --rebuild-index (the only repair there is)\n');
  });
});
