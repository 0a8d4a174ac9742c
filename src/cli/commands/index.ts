// The list of commands. Each module exports `register(program, ctx)` and adds one
// subcommand (or a few closely related ones) to the commander program.
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { register as nbd } from './nbd.js';
import { register as init } from './init.js';
import { register as check } from './check.js';
import { register as gc } from './gc.js';
import { register as repair } from './repair.js';
import { register as restore } from './restore.js';
import { register as backup } from './backup.js';
import { register as list } from './list.js';
import { register as serve } from './serve.js';
import { register as prune } from './prune.js';
import { register as run } from './run.js';

export type Register = (program: Command, ctx: CliContext) => void;

export const commands: Register[] = [nbd, init, backup, list, restore, serve, check, gc, repair, prune, run];
