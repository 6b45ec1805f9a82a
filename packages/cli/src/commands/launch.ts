/**
 * `accelerate launch [flags] script [script args]`: runs a training script in
 * several processes with Accelerate's flags, merged with the config file.
 *
 * The flags come from core's table (`LAUNCH_FLAGS`), so the CLI, the config
 * file merge and the environment the ranks receive always agree. Everything
 * after the script belongs to the script.
 * @module
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError } from '@accelerate/core';
import {
  LAUNCH_FLAGS,
  LaunchError,
  launchArgsFromFlags,
  launchProblemsMessage,
  missingStrategyPackage,
  parseLaunchFlagValue,
  strategyPluginPackages,
  defaultDiscoveryRoots,
  resolveLaunchArgs,
  runLaunch,
  type LaunchArgs,
  type LaunchFlagGroup,
  type LaunchFlagSpec,
  type LaunchValue,
  type RequestedStrategy,
  type ResolvedLaunch,
  type SupervisionResult,
} from '@accelerate/core/internal';
import { Option, type Command } from 'commander';
import { CliError, type CliContext } from '../context.js';
import { markPassThrough } from '../pass-through.js';
import { probePackage } from './env.js';
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
        // Kept, not thrown: the action reports every bad value (and the other problems) at once.
        return new BadFlagValue((e as Error).message);
      }
      // Repeatable flags collect their values.
      if (spec.type === 'list' && Array.isArray(previous)) return [...(previous as string[]), ...(value as string[])];
      return value;
    });
  }
  if (spec.support === 'unsupported') option.hideHelp();
  return option;
}

/** A flag value that did not parse; {@link registerLaunchCommand}'s action reports them all together. */
export class BadFlagValue {
  constructor(readonly message: string) {}
}

/**
 * Throws one CliError listing the bad flag values and every other problem the
 * remaining settings have (config file, combinations), so one run shows them all.
 */
function reportBadFlags(flags: Record<string, unknown>, script: string, scriptArgs: string[], ctx: CliContext): void {
  const bad = Object.values(flags).filter((v): v is BadFlagValue => v instanceof BadFlagValue);
  if (bad.length === 0) return;
  const problems = bad.map((b) => b.message);
  const rest = Object.fromEntries(Object.entries(flags).filter(([, v]) => !(v instanceof BadFlagValue))) as Record<string, LaunchValue | undefined>;
  try {
    resolveLaunchArgs(launchArgsFromFlags(rest, script, scriptArgs), { env: ctx.env });
  } catch (e) {
    if (e instanceof LaunchError) problems.push(...e.problems);
    else if (e instanceof ConfigError) problems.push(e.message);
    else throw e;
  }
  throw new CliError(launchProblemsMessage(problems));
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

/** Environment variable naming the compute backend a script should use (`libtorch`, `tfjs`); read by the examples and by this check. */
export const BACKEND_ENV = 'ACCELERATE_BACKEND';
const TFJS_PACKAGE = '@accelerate/backend-tfjs';
const LIBTORCH_PACKAGE = '@accelerate/backend-libtorch';

/** The backend a launch asks for explicitly: `ACCELERATE_BACKEND`, else a `--backend X` / `--backend=X` script argument. */
export function requestedBackend(env: CliContext['env'], scriptArgs: readonly string[]): { backend: string; source: string } | undefined {
  const fromEnv = env[BACKEND_ENV]?.trim().toLowerCase();
  if (fromEnv && fromEnv !== 'auto') return { backend: fromEnv, source: `${BACKEND_ENV}=${fromEnv}` };
  for (let i = 0; i < scriptArgs.length; i++) {
    const a = scriptArgs[i];
    const value = a === '--backend' ? scriptArgs[i + 1] : a.startsWith('--backend=') ? a.slice('--backend='.length) : undefined;
    if (value && value !== 'auto') return { backend: value.toLowerCase(), source: `the script argument --backend ${value}` };
  }
  return undefined;
}

function resolvable(name: string): boolean {
  try {
    import.meta.resolve(name);
    return true;
  } catch {
    return false;
  }
}

/** Whether backend-libtorch resolves and its compiled addon is on disk (where its loader looks), without loading it. */
function libtorchAddonBuilt(env: CliContext['env']): boolean {
  if (env.ACCELERATE_TORCH_ADDON) return existsSync(env.ACCELERATE_TORCH_ADDON);
  try {
    const entry = fileURLToPath(import.meta.resolve(LIBTORCH_PACKAGE)); // <root>/dist/index.js
    return existsSync(join(dirname(dirname(entry)), 'build', 'Release', 'torch_native.node'));
  } catch {
    return false;
  }
}

interface TfjsMultiProcessModule {
  tfjsMultiProcessSupport(importer?: () => Promise<unknown>): Promise<{ available: boolean; reason?: string }>;
  GLOO_PACKAGE?: string;
}

/**
 * Before spawning several processes that will run on TensorFlow.js, ask
 * `@accelerate/backend-tfjs`'s `tfjsMultiProcessSupport()` whether the gloo
 * process group it borrows can load; returns its reason when it cannot (so the
 * launch fails at once instead of in every rank).
 *
 * A script "will use tfjs" when it says so ({@link requestedBackend}), or when
 * it asks for nothing, `@accelerate/backend-libtorch` does not load and
 * `@accelerate/backend-tfjs` does (the automatic choice then falls to tfjs).
 * Packages are imported through `ctx.importModule` when given (tests), never
 * statically: the CLI does not depend on either backend.
 */
export async function checkTfjsMultiProcess(numProcesses: number, scriptArgs: readonly string[], ctx: CliContext): Promise<string | undefined> {
  if (numProcesses <= 1) return undefined;
  const importModule = ctx.importModule ?? ((name: string) => import(name));
  const requested = requestedBackend(ctx.env, scriptArgs);
  let why: string;
  if (requested) {
    if (requested.backend !== 'tfjs') return undefined;
    why = requested.source;
  } else {
    // Without tfjs installed nothing here applies: skip loading libtorch's native addon in the launcher.
    if (!ctx.importModule && !resolvable(TFJS_PACKAGE)) return undefined;
    // A built addon is taken as "libtorch loads": loading it here would cost the launcher ~1 s on every launch.
    if (!ctx.importModule && libtorchAddonBuilt(ctx.env)) return undefined;
    const libtorch = await probePackage(LIBTORCH_PACKAGE, importModule);
    if (libtorch.state === 'installed') return undefined;
    why = `${LIBTORCH_PACKAGE} ${libtorch.state === 'not installed' ? 'is not installed' : `does not load (${libtorch.reason})`}, so the backend is tfjs`;
  }
  let tfjsModule: Partial<TfjsMultiProcessModule>;
  try {
    tfjsModule = (await importModule(TFJS_PACKAGE)) as Partial<TfjsMultiProcessModule>;
  } catch {
    return undefined; // without tfjs the script fails on its own, with its own message
  }
  if (typeof tfjsModule.tfjsMultiProcessSupport !== 'function') return undefined;
  const gloo = tfjsModule.GLOO_PACKAGE ?? LIBTORCH_PACKAGE;
  const support = await tfjsModule.tfjsMultiProcessSupport(() => importModule(gloo));
  if (support.available) return undefined;
  return `cannot start ${numProcesses} processes on the tfjs backend (${why}): ${support.reason ?? 'no process group is available'}`;
}

/** Adds `accelerate launch` to the program. */
const STRATEGY_OF_PARADIGM: Partial<Record<ResolvedLaunch['paradigm'], RequestedStrategy>> = {
  fsdp: 'FSDP',
  deepspeed: 'DEEPSPEED',
  megatron_lm: 'MEGATRON_LM',
};

/**
 * A launch that asks for FSDP / DeepSpeed / Megatron-LM (flag, config file or
 * env) needs the package that provides that strategy; without it every rank
 * would stop in `ready()`, so say it once, before any process starts. Scripts
 * run as a module or without Node are not checked.
 */
export function checkStrategyPackage(resolved: ResolvedLaunch, cwd: string = process.cwd()): string | undefined {
  const requested = STRATEGY_OF_PARADIGM[resolved.paradigm];
  if (!requested || resolved.module || resolved.noPython || !resolved.script) return undefined;
  const from = [cwd, dirname(resolvePath(cwd, resolved.script)), ...defaultDiscoveryRoots()];
  if (strategyPluginPackages(requested, { from }).length > 0) return undefined;
  const why = `no installed package declares "strategy": "${requested}" in its package.json (looked in the node_modules above ${cwd}, the script and @accelerate/core)`;
  return `${missingStrategyPackage(requested, why).message} Nothing was started.`;
}

/** The package `checkFsdpSettings` asks through `ctx.importModule` (tests); otherwise the installed FSDP plugin is found by discovery. */
export const FSDP_PLUGIN_PACKAGE = '@accelerate/plugin-fsdp';

/** What an FSDP plugin package may export so that `accelerate launch` checks its settings before any rank starts. */
interface FsdpLaunchValidator {
  validateFsdpLaunchConfig(input: {
    section: ResolvedLaunch['sections']['fsdp'];
    numProcesses: number;
    localWorldSize?: number;
    dpShardSize?: number;
  }): string[];
}

/**
 * A launch that asks for FSDP: let the installed FSDP plugin check the
 * launch's FSDP settings (strategy against the process count, FSDP2 rules,
 * hybrid shard groups, …) before any process starts, so a bad setting fails
 * once instead of in every rank. The plugin is loaded dynamically (the CLI
 * does not depend on it), only when installed; a plugin that does not load
 * or exports no `validateFsdpLaunchConfig` is not asked (the ranks report).
 * Options the script passes in code (`fsdp({...})`) are not known here.
 */
export async function checkFsdpSettings(resolved: ResolvedLaunch, ctx: CliContext, cwd: string = process.cwd()): Promise<string | undefined> {
  if (resolved.paradigm !== 'fsdp') return undefined;
  const found = await loadStrategyPlugin<FsdpLaunchValidator>('FSDP', FSDP_PLUGIN_PACKAGE, resolved, ctx, cwd);
  const validate = found?.mod.validateFsdpLaunchConfig;
  if (!found || typeof validate !== 'function') return undefined;
  const { from } = found;
  const problems = validate({
    section: resolved.sections.fsdp,
    numProcesses: resolved.numProcesses,
    localWorldSize: resolved.localProcesses,
    dpShardSize: resolved.useParallelismConfig ? resolved.sections.parallelism.dpShardSize.value : undefined,
  });
  return invalidSettings('FSDP', from, problems);
}

/**
 * The installed plugin package providing `strategy` (or `packageName` through
 * `ctx.importModule` in tests), imported; undefined when none is installed or
 * it does not load (the ranks then report its settings themselves).
 */
async function loadStrategyPlugin<V>(
  strategy: string,
  packageName: string,
  resolved: ResolvedLaunch,
  ctx: CliContext,
  cwd: string,
): Promise<{ mod: Partial<V>; from: string } | undefined> {
  try {
    if (ctx.importModule) return { mod: (await ctx.importModule(packageName)) as Partial<V>, from: packageName };
    const roots = [cwd, ...(resolved.script && !resolved.module && !resolved.noPython ? [dirname(resolvePath(cwd, resolved.script))] : []), ...defaultDiscoveryRoots()];
    const [pkg] = strategyPluginPackages(strategy, { from: roots });
    if (!pkg?.plugin) return undefined;
    return { mod: (await import(pathToFileURL(resolvePath(pkg.dir, pkg.plugin.entry)).href)) as Partial<V>, from: pkg.name };
  } catch {
    return undefined;
  }
}

/** The launch's refusal for the problems a plugin's validator found, or undefined when there are none. */
function invalidSettings(what: string, from: string, problems: string[]): string | undefined {
  if (problems.length === 0) return undefined;
  const list = problems.length === 1 ? problems[0] : problems.map((p) => `\n  - ${p}`).join('');
  return `the ${what} settings of this launch are invalid (checked by ${from}): ${list}\nNothing was started.`;
}

/** The package `checkDeepSpeedSettings` asks through `ctx.importModule` (tests); otherwise the installed DeepSpeed plugin is found by discovery. */
export const DEEPSPEED_PLUGIN_PACKAGE = '@accelerate/plugin-deepspeed';

/** What a DeepSpeed plugin package may export so that `accelerate launch` checks its settings before any rank starts. */
interface DeepSpeedLaunchValidator {
  validateDeepSpeedLaunchConfig(input: {
    section: ResolvedLaunch['sections']['deepspeed'];
    numProcesses: number;
    mixedPrecision?: string;
    mixedPrecisionSource?: string;
    cwd?: string;
  }): string[];
}

/**
 * A launch that asks for DeepSpeed: let the installed DeepSpeed plugin check
 * the launch's DeepSpeed settings (the DeepSpeed config file loads and has
 * `zero_optimization`, the accelerate config does not also set what that file
 * shadows, precision does not conflict, a fixed `train_batch_size` fits the
 * process count) before any process starts, the same way
 * {@link checkFsdpSettings} does for FSDP. Options given in code
 * (`deepspeed({...})`) are not known here.
 */
export async function checkDeepSpeedSettings(resolved: ResolvedLaunch, ctx: CliContext, cwd: string = process.cwd()): Promise<string | undefined> {
  if (resolved.paradigm !== 'deepspeed') return undefined;
  const found = await loadStrategyPlugin<DeepSpeedLaunchValidator>('DEEPSPEED', DEEPSPEED_PLUGIN_PACKAGE, resolved, ctx, cwd);
  const validate = found?.mod.validateDeepSpeedLaunchConfig;
  if (!found || typeof validate !== 'function') return undefined;
  const { from } = found;
  const problems = validate({
    section: resolved.sections.deepspeed,
    numProcesses: resolved.numProcesses,
    mixedPrecision: resolved.mixedPrecision,
    mixedPrecisionSource: resolved.config.mixedPrecision.source,
    cwd,
  });
  return invalidSettings('DeepSpeed', from, problems);
}

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
    reportBadFlags(flags, script, scriptArgs, ctx);
    const args = launchArgsFromFlags(flags, script, scriptArgs);
    let numProcesses = 1;
    let resolved: ResolvedLaunch | undefined;
    try {
      resolved = resolveLaunchArgs(args, { env: ctx.env });
      numProcesses = resolved.numProcesses;
    } catch {
      // Invalid settings: runLaunch reports them below.
    }
    const refusal =
      (await checkTfjsMultiProcess(numProcesses, scriptArgs, ctx)) ??
      (resolved && checkStrategyPackage(resolved)) ??
      (resolved && (await checkFsdpSettings(resolved, ctx))) ??
      (resolved && (await checkDeepSpeedSettings(resolved, ctx)));
    if (refusal) throw new CliError(refusal);
    const closeDashboard = dashboard ? await runDashboard(ctx, typeof dashboard === 'string' ? dashboard : '.', {}) : undefined;
    try {
      const result = await runLaunchCommand(args, ctx);
      ctx.exitCode = result.exitCode;
    } finally {
      await closeDashboard?.();
    }
  });
}
