/**
 * Launching from code: Accelerate's `notebook_launcher` and `debug_launcher`.
 *
 * Node cannot fork a running program, so {@link launch} re-runs the current
 * script (same node, same node options, same arguments) once per process
 * with the rank's environment. In those children, the same `launch` call
 * runs `fn` instead of spawning, hands its result back to the parent and
 * ends the process.
 * @module
 */
import { availableParallelism } from 'node:os';
import type { MixedPrecision } from '../interfaces/backend.js';
import { PartialState } from '../state/partial-state.js';
import { resolveLaunchArgs } from './args.js';
import { LaunchError } from './flags.js';
import { buildLaunchPlan, rankEnvironment } from './plan.js';
import { findFreePort } from './port.js';
import { superviseRanks, type SupervisionResult } from './supervisor.js';

/**
 * Set in the processes {@link launch} starts: the number of the `launch`
 * call (1 for the script's first call, …) whose `fn` the child runs.
 */
export const LAUNCH_CALL_ENV_VAR = 'ACCELERATE_LAUNCH_CALL';

/** Options of {@link launch}. */
export interface LaunchOptions<A extends unknown[] = unknown[]> {
  /** Processes on this machine (required unless already inside a launched run). */
  numProcesses?: number;
  /** Precision every process uses (ACCELERATE_MIXED_PRECISION). Default `no`. */
  mixedPrecision?: MixedPrecision;
  /** Force the CPU (ACCELERATE_USE_CPU). */
  cpu?: boolean;
  /** ACCELERATE_GRADIENT_ACCUMULATION_STEPS for every process. */
  gradientAccumulationSteps?: number;
  /** Cross-rank shape checks on collectives (ACCELERATE_DEBUG_MODE). */
  debug?: boolean;
  /** Address of rank 0 (Accelerate's `master_addr`). Default 127.0.0.1. */
  mainProcessIp?: string;
  /** Port of rank 0 (Accelerate's `use_port`); 0 or absent = a free port (single machine). */
  mainProcessPort?: number;
  /** Machines taking part (`num_nodes`); each runs `launch` with its own `machineRank`. Default 1. */
  numMachines?: number;
  /** This machine's rank (`node_rank`). Default 0. */
  machineRank?: number;
  /** OMP_NUM_THREADS of every process; default: the cores divided among them. */
  numCpuThreadsPerProcess?: number;
  /** Arguments for `fn` (evaluated again by the script in every process). */
  args?: A;
  /** Extra environment for every process. */
  env?: Readonly<Record<string, string>>;
  /** Print the processes' output without the `[rank N]` prefix. */
  quiet?: boolean;
  /** Where the processes' output goes (default: this process's stdout / stderr). */
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  /** Time between SIGTERM and SIGKILL when stopping processes (default 5000 ms). */
  gracePeriodMs?: number;
}

/** Thrown by {@link launch} when a process failed; carries the per-rank outcome. */
export class LaunchFailedError extends Error {
  override name = 'LaunchFailedError';
  constructor(readonly result: SupervisionResult) {
    super(result.summary.trimEnd());
  }
}

let callCount = 0;
interface ResultMessage {
  accelerateLaunchResult: true;
  rank: number;
  value: unknown;
}
const isResultMessage = (m: unknown): m is ResultMessage =>
  typeof m === 'object' && m !== null && (m as ResultMessage).accelerateLaunchResult === true;

/**
 * True in a process started by {@link launch} (or by `accelerate launch`,
 * torchrun, MPI or SLURM with more than one process): code that must run
 * once, in the parent only, can check it.
 */
export function isLaunchedChild(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  if (env[LAUNCH_CALL_ENV_VAR]) return true;
  return alreadyDistributed(env);
}

function alreadyDistributed(env: Readonly<Record<string, string | undefined>>): boolean {
  const n = Number(env.WORLD_SIZE ?? env.OMPI_COMM_WORLD_SIZE ?? env.PMI_SIZE ?? env.MV2_COMM_WORLD_SIZE ?? env.SLURM_NTASKS ?? '1');
  return Number.isFinite(n) && n > 1 && (env.RANK !== undefined || env.LOCAL_RANK !== undefined || env.OMPI_COMM_WORLD_RANK !== undefined || env.PMI_RANK !== undefined || env.MV2_COMM_WORLD_RANK !== undefined || env.SLURM_PROCID !== undefined);
}

/**
 * Runs `fn` in `numProcesses` processes that form one distributed run, like
 * Accelerate's `notebook_launcher`, and resolves to each rank's result (in
 * rank order; results travel by structured clone).
 *
 * How: the current script is started again `numProcesses` times (node, its
 * options and arguments unchanged) with the rank's environment; inside, this
 * same call runs `fn(...args)` (an `Accelerator` created there joins the
 * process group), sends its result back and ends the process — so code after
 * `await launch(...)` only runs in the parent. Top-level code before it runs
 * in every process: keep it free of side effects, or guard it with
 * {@link isLaunchedChild}. Output is prefixed with `[rank N]`; if a process
 * fails the others are stopped and the promise rejects with a
 * {@link LaunchFailedError} naming the rank, its exit code or signal and its
 * last stderr lines.
 *
 * With one process, or when the script already runs inside a launched world
 * (`accelerate launch`, torchrun, MPI, SLURM), `fn` simply runs here.
 */
export async function launch<R, A extends unknown[] = []>(
  fn: (...args: A) => R | Promise<R>,
  options: LaunchOptions<A> = {},
): Promise<Awaited<R>[]> {
  callCount += 1;
  const call = callCount;
  const args = (options.args ?? []) as A;
  const env = process.env;
  const marker = env[LAUNCH_CALL_ENV_VAR];

  if (marker !== undefined) {
    const wanted = Number(marker);
    // An earlier launch call of this script: its processes already ran; nothing to do here.
    if (call < wanted) return [];
    if (call === wanted) await runAsChild(fn, args);
    // A later call cannot be reached: the child ended after its own call.
    return [];
  }
  if (alreadyDistributed(env)) return [await fn(...args)];

  const numMachines = options.numMachines ?? 1;
  const local = options.numProcesses;
  if (local === undefined) {
    throw new LaunchError('launch() needs numProcesses: the number of processes to start on this machine, e.g. launch(main, { numProcesses: 2 }).');
  }
  if (!Number.isInteger(local) || local < 1) {
    throw new LaunchError(`launch() numProcesses is ${JSON.stringify(local)}; pass a whole number >= 1.`);
  }
  if (local === 1 && numMachines === 1) return [await fn(...args)];
  if (PartialState.initialized) {
    throw new LaunchError(
      'launch() was called after an Accelerator (or PartialState) was set up in this process. Create the Accelerator inside the launched function, so that every process joins the same run.',
    );
  }
  const script = process.argv[1];
  if (!script) {
    throw new LaunchError('launch() starts the current script again in every process, so it must be called from a script file (node train.js), not a REPL or `node -e`.');
  }

  const resolved = resolveLaunchArgs(
    {
      numProcesses: local * numMachines,
      numMachines,
      machineRank: options.machineRank ?? 0,
      mainProcessIp: options.mainProcessIp,
      mainProcessPort: options.mainProcessPort,
      mixedPrecision: options.mixedPrecision,
      cpu: options.cpu,
      debug: options.debug,
      gradientAccumulationSteps: options.gradientAccumulationSteps,
      numCpuThreadsPerProcess: options.numCpuThreadsPerProcess,
    },
    { configFile: null, env },
  );
  const port =
    resolved.mainProcessPort === undefined || resolved.mainProcessPort === 0
      ? numMachines === 1
        ? await findFreePort()
        : 29500
      : resolved.mainProcessPort;
  const plan = buildLaunchPlan(resolved, { port, env, cpuCount: availableParallelism() });
  // Debuggers would fight over one port; everything else of node's options is kept.
  const execArgv = process.execArgv.filter((a) => !/^--inspect(-brk|-port|-publish-uid)?(=|$)/.test(a));
  const command = process.execPath;
  const commandArgs = [...execArgv, script, ...process.argv.slice(2)];

  const results = new Map<number, unknown>();
  const outcome = await superviseRanks(
    plan.ranks.map((r) => ({
      rank: r.rank,
      localRank: r.localRank,
      command,
      args: commandArgs,
      env: { ...rankEnvironment(plan, r, env), ...options.env, [LAUNCH_CALL_ENV_VAR]: String(call) },
    })),
    {
      prefix: !options.quiet,
      stdout: options.stdout,
      stderr: options.stderr,
      gracePeriodMs: options.gracePeriodMs,
      label: 'launch()',
      onMessage: (rank, m) => {
        if (isResultMessage(m)) results.set(rank, m.value);
      },
    },
  );
  if (!outcome.ok) throw new LaunchFailedError(outcome);
  return plan.ranks.map((r) => results.get(r.rank) as Awaited<R>);
}

/** Inside a launched process: run `fn`, send the result to the parent, end the process. */
async function runAsChild<R, A extends unknown[]>(fn: (...args: A) => R | Promise<R>, args: A): Promise<never> {
  // If the parent dies, do not linger.
  process.on('disconnect', () => process.exit(1));
  process.channel?.unref();
  let value: unknown;
  try {
    value = await fn(...args);
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  }
  const rank = Number(process.env.RANK ?? 0);
  await new Promise<void>((done) => {
    if (!process.send) return done();
    try {
      process.send({ accelerateLaunchResult: true, rank, value } satisfies ResultMessage, undefined, {}, () => done());
    } catch (e) {
      process.stderr.write(`launch(): the result of rank ${rank} cannot be sent to the parent (${(e as Error).message}); it is dropped.\n`);
      done();
    }
  });
  process.exit(0);
}

/** Options of {@link debugLauncher}. */
export type DebugLauncherOptions<A extends unknown[] = unknown[]> = Omit<LaunchOptions<A>, 'cpu' | 'mixedPrecision' | 'numMachines' | 'machineRank'>;

/**
 * Accelerate's `debug_launcher`: {@link launch} on the CPU with
 * `numProcesses` (default 2) processes and no mixed precision, for testing
 * distributed code on any machine.
 */
export function debugLauncher<R, A extends unknown[] = []>(
  fn: (...args: A) => R | Promise<R>,
  options: DebugLauncherOptions<A> = {},
): Promise<Awaited<R>[]> {
  return launch(fn, { ...options, numProcesses: options.numProcesses ?? 2, cpu: true, mixedPrecision: 'no', mainProcessIp: options.mainProcessIp ?? '127.0.0.1' });
}
