/**
 * `accelerate launch` as one function: resolve the arguments, choose the
 * rendezvous port, build the plan, run and supervise the ranks.
 * @module
 */
import { availableParallelism } from 'node:os';
import type { EnvironmentVariables } from '../state/environment.js';
import { DEFAULT_MASTER_PORT } from '../state/environment.js';
import { resolveLaunchArgs, type LaunchArgs, type ResolvedLaunch } from './args.js';
import { LaunchError } from './flags.js';
import { buildLaunchPlan, rankEnvironment, resolveScriptCommand, type LaunchPlan } from './plan.js';
import { findFreePort, isPortInUse } from './port.js';
import { superviseRanks, type SuperviseOptions, type SupervisionResult } from './supervisor.js';

/** Options of {@link prepareLaunch} and {@link runLaunch}. */
export interface PrepareLaunchOptions {
  /** The launcher's environment (config file lookup, OMP_NUM_THREADS, base of the ranks' environment). Default `process.env`. */
  env?: EnvironmentVariables;
  /** Working directory of the ranks and base of a relative script path. Default `process.cwd()`. */
  cwd?: string;
  /** CPU cores to divide among local ranks. Default `os.availableParallelism()`. */
  cpuCount?: number;
  /** Called with each warning (defaults used, port taken, …). */
  warn?: (message: string) => void;
}

/** A launch ready to start. */
export interface PreparedLaunch {
  readonly resolved: ResolvedLaunch;
  readonly plan: LaunchPlan;
}

/**
 * Resolves `args` (flags + config file + defaults, validated), picks the
 * rendezvous port and builds the plan with the command for the script.
 *
 * Port: on one machine, an absent or 0 `mainProcessPort` picks a free port,
 * and a given port that is already taken is replaced by a free one with a
 * warning (Accelerate's "standalone" fallback). On several machines the port
 * defaults to 29500 and machine 0 refuses to start if it is taken.
 */
export async function prepareLaunch(args: LaunchArgs, options: PrepareLaunchOptions = {}): Promise<PreparedLaunch> {
  const env = options.env ?? process.env;
  const warn = options.warn ?? (() => {});
  const resolved = resolveLaunchArgs(args, { env });
  if (resolved.script === undefined) {
    throw new LaunchError('accelerate launch needs a training script: accelerate launch [flags] train.ts [script arguments].');
  }
  const command = resolveScriptCommand(resolved.script, resolved.scriptArgs, resolved, { cwd: options.cwd });
  for (const w of resolved.warnings) warn(w);

  let port = resolved.mainProcessPort;
  if (resolved.numMachines === 1) {
    if (port === undefined || port === 0) port = await findFreePort();
    else if (resolved.numProcesses > 1 && (await isPortInUse(port))) {
      const free = await findFreePort();
      warn(
        `Port ${port} is already in use; launching on the free port ${free} instead. Pass another --main_process_port (or 0 to always pick a free one).`,
      );
      port = free;
    }
  } else {
    port ??= DEFAULT_MASTER_PORT;
    if (resolved.machineRank === 0 && (await isPortInUse(port))) {
      throw new LaunchError(
        `Port ${port} on this machine (machine_rank 0, which hosts the rendezvous) is already in use by another program. Pass a free --main_process_port, the same on every machine.`,
      );
    }
  }
  const plan = buildLaunchPlan(resolved, { port, env, cpuCount: options.cpuCount ?? availableParallelism(), command });
  for (const w of plan.warnings) warn(w);
  return { resolved, plan };
}

/**
 * Runs `accelerate launch`: {@link prepareLaunch}, then starts this
 * machine's ranks and supervises them (see {@link superviseRanks}). Resolves
 * with the outcome; the caller exits with `result.exitCode` and prints
 * `result.summary` when it is not ok.
 */
export async function runLaunch(
  args: LaunchArgs,
  options: PrepareLaunchOptions & Omit<SuperviseOptions, 'prefix' | 'logDir' | 'tee' | 'quiet'> = {},
): Promise<SupervisionResult & PreparedLaunch> {
  const { resolved, plan } = await prepareLaunch(args, options);
  const env = options.env ?? process.env;
  const command = plan.command!;
  const result = await superviseRanks(
    plan.ranks.map((r) => ({
      rank: r.rank,
      localRank: r.localRank,
      command: command.command,
      args: command.args,
      env: rankEnvironment(plan, r, env),
      cwd: options.cwd,
    })),
    {
      ...options,
      prefix: !resolved.quiet,
      quiet: resolved.quiet,
      logDir: resolved.logDir,
      tee: resolved.logDir ? resolved.tee : undefined,
    },
  );
  return { ...result, resolved, plan };
}
