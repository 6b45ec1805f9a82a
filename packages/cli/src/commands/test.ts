/**
 * `accelerate test [--config_file]`: runs the bundled check script under
 * `accelerate launch` and says whether distributed training works here.
 * Without a config file (given or default) it uses 2 processes on the CPU.
 * @module
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { findDefaultConfigFile } from '@accelerate/core';
import { type LaunchArgs } from '@accelerate/core/internal';
import { InvalidArgumentError, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { runLaunchCommand, type LaunchCommandOptions } from './launch.js';

/** Printed when every check passed (Accelerate's message). */
export const TEST_SUCCESS_MESSAGE = 'Test is a success! You are ready for your distributed training!';

/** Path of the bundled check script (the built `.js`, or the `.ts` source when running from source). */
export function testScriptPath(): string {
  const js = fileURLToPath(new URL('../test-script.js', import.meta.url));
  if (existsSync(js)) return js;
  return fileURLToPath(new URL('../test-script.ts', import.meta.url));
}

/** Options of {@link runTest}. */
export interface TestOptions extends LaunchCommandOptions {
  /** Config file to launch with; default: the default config file when it exists, else 2 processes on the CPU. */
  configFile?: string;
  /** Number of processes to check with (beats the config file). An accelerate-ts addition: Python's `accelerate test` only takes a config file. */
  numProcesses?: number;
}

/** The launch arguments `accelerate test` uses. */
export function testLaunchArgs(ctx: Pick<CliContext, 'env'>, configFile?: string, numProcesses?: number): LaunchArgs {
  const script = testScriptPath();
  const n = numProcesses !== undefined ? { numProcesses } : {};
  if (configFile !== undefined) return { configFile, script, ...n };
  if (findDefaultConfigFile(ctx.env)) return { script, ...n };
  return { cpu: true, numProcesses: 2, numMachines: 1, mixedPrecision: 'no', script, ...n };
}

/** Runs the checks; returns the exit code (0 when every check passed on every rank). */
export async function runTest(ctx: CliContext, options: TestOptions = {}): Promise<number> {
  const args = testLaunchArgs(ctx, options.configFile, options.numProcesses);
  const how = args.configFile
    ? `with ${args.configFile}`
    : args.cpu
      ? `with ${args.numProcesses} processes on the CPU`
      : options.numProcesses !== undefined
        ? `with the default config file and ${options.numProcesses} processes`
        : 'with the default config file';
  ctx.stdout(`Running the accelerate-ts checks ${how}…\n`);
  const result = await runLaunchCommand(args, ctx, options);
  if (result.ok) {
    ctx.stdout(`${TEST_SUCCESS_MESSAGE}\n`);
    return 0;
  }
  ctx.stderr('accelerate test: distributed checks failed (see above).\n');
  return result.exitCode === 0 ? 1 : result.exitCode;
}

/** Adds `accelerate test` to the program. */
export function registerTestCommand(program: Command, ctx: CliContext): void {
  program
    .command('test')
    .description('Check that distributed training works here: data sharding, collectives, triggers, process ordering and DDP gradient synchronisation across processes.')
    .option('--config_file <path>', 'Config file to launch the checks with (default: the default config file, else 2 CPU processes).')
    .option('--num_processes <n>', 'Number of processes to run the checks on (beats the config file).', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`--num_processes must be a whole number >= 1, got ${JSON.stringify(v)}.`);
      return n;
    })
    .action(async (opts: { config_file?: string; num_processes?: number }) => {
      ctx.exitCode = await runTest(ctx, { configFile: opts.config_file, numProcesses: opts.num_processes });
    });
}
