/**
 * `accelerate test [--config_file]`: runs the bundled check script under
 * `accelerate launch` and says whether distributed training works here.
 * Without a config file (given or default) it uses 2 processes on the CPU.
 * @module
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { findDefaultConfigFile, type LaunchArgs } from '@accelerate/core';
import type { Command } from 'commander';
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
}

/** The launch arguments `accelerate test` uses. */
export function testLaunchArgs(ctx: Pick<CliContext, 'env'>, configFile?: string): LaunchArgs {
  const script = testScriptPath();
  if (configFile !== undefined) return { configFile, script };
  if (findDefaultConfigFile(ctx.env)) return { script };
  return { cpu: true, numProcesses: 2, numMachines: 1, mixedPrecision: 'no', script };
}

/** Runs the checks; returns the exit code (0 when every check passed on every rank). */
export async function runTest(ctx: CliContext, options: TestOptions = {}): Promise<number> {
  const args = testLaunchArgs(ctx, options.configFile);
  const how = args.configFile ? `with ${args.configFile}` : args.cpu ? 'with 2 processes on the CPU' : 'with the default config file';
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
    .action(async (opts: { config_file?: string }) => {
      ctx.exitCode = await runTest(ctx, { configFile: opts.config_file });
    });
}
