// Placeholder until the NBD client lands: `pullback nbd-info URI` is filled in by the NBD work.
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(_program: Command, _ctx: CliContext): void {}
