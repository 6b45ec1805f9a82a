/**
 * `accelerate launch [flags] script [script args]`: runs a training script in
 * several processes with Accelerate's flags, merged with the config file.
 *
 * The flags come from core's table (`LAUNCH_FLAGS`), so the CLI, the config
 * file merge and the environment the ranks receive always agree. Everything
 * after the script belongs to the script.
 * @module
 */
import {
  LAUNCH_FLAGS,
  launchArgsFromFlags,
  parseLaunchFlagValue,
  runLaunch,
  type LaunchArgs,
  type LaunchFlagGroup,
  type LaunchFlagSpec,
  type LaunchValue,
  type SupervisionResult,
} from '@accelerate/core';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { markPassThrough } from '../program.js';
import { runDashboard } from './tracking.js';

const GROUP_HEADINGS: Record<LaunchFlagGroup, string> = {
  general: 'General:',
  hardware: 'Hardware selection:',
  resources: 'Resources:',
  paradigm: 'Training paradigm (exported to the ranks for the plugins):',
  distributed: 'Distributed:',
  tpu: 'TPU (not supported):',
  deepspeed: 'DeepSpeed (exported as ACCELERATE_DEEPSPEED_* with --use_deepspeed):',
  fsdp: 'FSDP (exported as FSDP_* with --use_fsdp):',
  megatron_lm: 'Megatron-LM (exported as MEGATRON_LM_* with --use_megatron_lm):',
  fp8: 'FP8 (exported as ACCELERATE_FP8_* with --mixed_precision fp8):',
  aws: 'AWS SageMaker (not supported):',
  mpirun: 'MPI (not supported):',
  parallelism: 'Parallelism config (exported as PARALLELISM_CONFIG_* with --use_parallelism_config):',
};

/** The commander option for one launch flag. */
export function launchOption(spec: LaunchFlagSpec): Option {
  const long = `--${spec.name}`;
  const names = spec.short ? `-${spec.short}, ${long}` : long;
  const takesValue = spec.type !== 'boolean';
  // The default is only shown: an unset flag must stay undefined so the config file can fill it.
  const help = spec.default !== undefined && spec.default !== '' ? `${spec.help} (default: ${String(spec.default)})` : spec.help;
  const option = new Option(takesValue ? `${names} <${spec.valueName ?? 'value'}>` : names, help).helpGroup(GROUP_HEADINGS[spec.group]);
  if (takesValue) {
    option.argParser((raw: string, previous: unknown) => {
      let value: LaunchValue;
      try {
        value = parseLaunchFlagValue(spec, raw);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
      // Repeatable flags collect their values.
      if (spec.type === 'list' && Array.isArray(previous)) return [...(previous as string[]), ...(value as string[])];
      return value;
    });
  }
  if (spec.support === 'unsupported') option.hideHelp();
  return option;
}

/** Options of {@link runLaunchCommand}. */
export interface LaunchCommandOptions {
  /** Working directory for the ranks (default `process.cwd()`). */
  cwd?: string;
  /** Time between SIGTERM and SIGKILL when stopping ranks. */
  gracePeriodMs?: number;
  /** Called with each rank's pid once started (tests). */
  onSpawn?: (rank: number, pid: number) => void;
}

/**
 * Runs the launch and returns its outcome; `exitCode` is 0 when every rank
 * succeeded, else the failing rank's exit code (or 128 + signal). On failure
 * it has already printed which rank failed, how, and its last stderr lines.
 */
export async function runLaunchCommand(args: LaunchArgs, ctx: CliContext, options: LaunchCommandOptions = {}): Promise<SupervisionResult> {
  const result = await runLaunch(args, {
    env: ctx.env,
    cwd: options.cwd,
    stdout: ctx.stdout,
    stderr: ctx.stderr,
    gracePeriodMs: options.gracePeriodMs,
    onSpawn: options.onSpawn,
    warn: (w) => ctx.stderr(`accelerate launch: warning: ${w}\n`),
  });
  if (!result.ok) ctx.stderr(result.summary);
  return result;
}

/** Adds `accelerate launch` to the program. */
export function registerLaunchCommand(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('launch')
    .description(
      'Run a training script (.ts, .mts, .js, .mjs) in several processes: sets each rank\'s environment, prefixes its output with [rank N], stops every rank when one fails.',
    )
    .usage('[flags] <script> [script args...]')
    .argument('<script>', 'The training script; with --module a module name, with --no_python a program.')
    .argument('[script_args...]', 'Arguments for the script, passed through untouched.');
  for (const spec of LAUNCH_FLAGS) cmd.addOption(launchOption(spec));
  cmd.addHelpText(
    'after',
    '\nFlags accept snake_case and kebab-case (--num_processes or --num-processes). Flags win over the config file; the config file wins over the defaults.',
  );
  cmd.option('--dashboard [logdir]', 'Also serve the live dashboard (127.0.0.1) of the runs under logdir (default: the current folder) while the script runs.');
  markPassThrough(cmd);
  cmd.action(async (script: string, scriptArgs: string[], opts: Record<string, LaunchValue | undefined>) => {
    const { dashboard, ...flags } = opts;
    const args = launchArgsFromFlags(flags, script, scriptArgs);
    const closeDashboard = dashboard ? await runDashboard(ctx, typeof dashboard === 'string' ? dashboard : '.', {}) : undefined;
    try {
      const result = await runLaunchCommand(args, ctx);
      ctx.exitCode = result.exitCode;
    } finally {
      await closeDashboard?.();
    }
  });
}
