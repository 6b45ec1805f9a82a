/**
 * Commands whose first positional argument starts a user script. Kept apart
 * from `program.ts` so that commands can mark themselves without importing
 * the program (which imports every command).
 * @module
 */
import type { Command } from 'commander';

const passThrough = new WeakSet<Command>();

/**
 * Marks a command whose first positional argument starts a user script
 * (`accelerate launch train.js --lr_rate 1`): flag spellings are normalised
 * only before it.
 */
export function markPassThrough(cmd: Command): Command {
  passThrough.add(cmd);
  cmd.passThroughOptions();
  return cmd;
}

/** Whether {@link markPassThrough} marked `cmd`. */
export function isPassThrough(cmd: Command): boolean {
  return passThrough.has(cmd);
}
