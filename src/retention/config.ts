// Loading the `pullback run` config file: TOML (smol-toml), validated strictly
// (config-validate.ts); relative paths are relative to the file. One documented example:
// examples/pullback.toml; the format is described in docs/nightly.md.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { PullbackError } from '../errors.js';
import { validateRunConfig, type RunConfig } from './config-validate.js';

export type { RunConfig, DomainSelection } from './config-validate.js';

/** Parses and validates config text; `source` names the file in messages and anchors relative paths. */
export function parseRunConfig(text: string, source: string): RunConfig {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split('\n')[0] ?? e.message;
      throw new PullbackError('CONFIG_INVALID', `config ${source}: line ${e.line}, column ${e.column}: ${first}`, { cause: e });
    }
    throw e;
  }
  const config = validateRunConfig(doc, source);
  const base = dirname(resolve(source));
  config.repository = resolve(base, config.repository);
  if (config.scratchDir !== undefined) config.scratchDir = resolve(base, config.scratchDir);
  if (config.metricsFile !== undefined) config.metricsFile = resolve(base, config.metricsFile);
  return config;
}

export async function loadRunConfig(path: string): Promise<RunConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PullbackError('CONFIG_INVALID', `cannot read config ${path} (${code ?? (e as Error).message})${code === 'ENOENT' ? ': see examples/pullback.toml' : ''}`, { cause: e });
  }
  return parseRunConfig(text, path);
}
