/**
 * What `accelerate launch` will start on this machine: the command, and the
 * environment of every local rank (who it is, where rank 0 listens, the
 * precision and CPU threads, and the plugin settings of spec §10). A pure
 * function of the resolved arguments, so it can be checked without spawning.
 * @module
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { EnvironmentVariables } from '../state/environment.js';
import { DEFAULT_MASTER_PORT } from '../state/environment.js';
import { CONFIG_EXPORTED_ENV_VAR, CONFIG_FILE_ENV_VAR, DISTRIBUTED_TYPE_ENV_VAR, PROVENANCE_ENV_VAR } from '../config/env.js';
import { exportSection, type SettingSectionName } from '../config/settings.js';
import { encodeProvenanceEnv, type ProvenanceMap, type ResolvedSetting } from '../config/resolve.js';
import type { LaunchValueOrigin, ResolvedLaunch } from './args.js';
import { LaunchError, type LaunchValue } from './flags.js';

/** One local rank of a plan. */
export interface RankPlan {
  /** Global rank. */
  readonly rank: number;
  /** Rank on this machine. */
  readonly localRank: number;
  /** The variables this rank gets on top of the launcher's environment (common + its own). */
  readonly env: Readonly<Record<string, string>>;
}

/** The program each rank runs. */
export interface ScriptCommand {
  readonly command: string;
  readonly args: readonly string[];
  /** How the script is run, for messages: `node`, `node + tsx`, or `program`. */
  readonly runner: 'node' | 'node + tsx' | 'program';
}

/** Everything needed to start this machine's ranks. */
export interface LaunchPlan {
  readonly numProcesses: number;
  readonly numMachines: number;
  readonly machineRank: number;
  readonly localProcesses: number;
  readonly masterAddr: string;
  readonly masterPort: number;
  /** OMP_NUM_THREADS of every rank. */
  readonly threadsPerProcess: number;
  /** Variables every local rank gets (added to or replacing the launcher's environment). */
  readonly commonEnv: Readonly<Record<string, string>>;
  /** Variables removed from the launcher's environment before adding ours (stale values of settings left at their default). */
  readonly unsetEnv: readonly string[];
  readonly ranks: readonly RankPlan[];
  readonly command: ScriptCommand | undefined;
  readonly warnings: readonly string[];
}

/** Inputs of {@link buildLaunchPlan} that are not launch settings. */
export interface BuildLaunchPlanOptions {
  /** The rendezvous port to use (after choosing a free one when needed). Default: the resolved port, else 29500. */
  port?: number;
  /** The launcher's environment (reads OMP_NUM_THREADS, KMP_*). Default `process.env`. */
  env?: EnvironmentVariables;
  /** CPU cores to divide among the local ranks. */
  cpuCount?: number;
  /** The command each rank runs (see {@link resolveScriptCommand}). */
  command?: ScriptCommand;
}

/**
 * Accelerate variables a launcher owns: when their setting is at its
 * default they are removed from the children's environment rather than
 * exported (so the launcher's own shell cannot leak a stale value, and a
 * script's explicit `new Accelerator({ mixedPrecision })` is not contradicted
 * by a default).
 */
const OWNED_ENV = [
  'ACCELERATE_MIXED_PRECISION',
  'ACCELERATE_USE_CPU',
  'ACCELERATE_DEBUG_MODE',
  'ACCELERATE_GRADIENT_ACCUMULATION_STEPS',
  'ACCELERATE_PROCESS_GROUP_TIMEOUT',
  'ACCELERATE_USE_DEEPSPEED',
  'ACCELERATE_USE_FSDP',
  'ACCELERATE_USE_MEGATRON_LM',
  'ACCELERATE_USE_PARALLELISM_CONFIG',
  'ACCELERATE_DYNAMO_BACKEND',
  'ACCELERATE_CPU_AFFINITY',
  'ACCELERATE_CONFIG_PROVENANCE',
  'ACCELERATE_CONFIG_FILE',
  CONFIG_EXPORTED_ENV_VAR,
  DISTRIBUTED_TYPE_ENV_VAR,
];

const str = (v: LaunchValue | undefined): string => (Array.isArray(v) ? v.join(',') : String(v));
const lowerStr = (v: LaunchValue | undefined): string => str(v).toLowerCase();

/**
 * Builds the per-rank environment of this machine's ranks from resolved
 * launch settings:
 *
 * - world: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
 *   `GROUP_RANK`/`NODE_RANK` (= machine rank), `GROUP_WORLD_SIZE`,
 *   `ROLE_NAME`/`ROLE_RANK`/`ROLE_WORLD_SIZE` (torchrun's names),
 *   `MASTER_ADDR` (default 127.0.0.1), `MASTER_PORT`;
 * - `OMP_NUM_THREADS`: `--num_cpu_threads_per_process`, else the launcher's
 *   own `OMP_NUM_THREADS`, else the cores divided by the local processes;
 * - Accelerate's settings: `ACCELERATE_MIXED_PRECISION`, `ACCELERATE_USE_CPU`,
 *   `ACCELERATE_DEBUG_MODE`, `ACCELERATE_GRADIENT_ACCUMULATION_STEPS`, dynamo,
 *   CPU affinity, `CUDA_VISIBLE_DEVICES` and the FSDP / DeepSpeed /
 *   Megatron-LM / FP8 / parallelism variables of spec §10 when enabled —
 *   exported only when they differ from the default (defaults are unset);
 * - `ACCELERATE_CONFIG_FILE` (the file used) and `ACCELERATE_CONFIG_PROVENANCE`
 *   (where each exported value came from, for the ranks' provenance report).
 */
export function buildLaunchPlan(resolved: ResolvedLaunch, options: BuildLaunchPlanOptions = {}): LaunchPlan {
  const baseEnv = options.env ?? process.env;
  const v = resolved.values;
  const o = resolved.origins;
  const warnings: string[] = [];
  const env: Record<string, string> = {};
  const provenance: ProvenanceMap = {};
  const unset = new Set<string>(OWNED_ENV);
  const put = (name: string, value: string, origin?: Pick<ResolvedSetting<unknown>, 'source' | 'detail'>) => {
    env[name] = value;
    unset.delete(name);
    // A value the launcher itself read from its environment passes through as plain env.
    if (origin && origin.source !== 'env') provenance[name] = { value, source: origin.source, detail: origin.detail };
  };
  const origin = (name: string): LaunchValueOrigin => o[name] ?? { source: 'default', detail: '' };
  // The core settings as the launcher resolved them (the rows the ranks read back), each with its source.
  const c = resolved.config;

  const masterAddr = resolved.mainProcessIp ?? '127.0.0.1';
  const masterPort = options.port ?? (resolved.mainProcessPort || DEFAULT_MASTER_PORT);
  if (!Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535) {
    throw new LaunchError(`The rendezvous port ${masterPort} is not a port number (1..65535); pass --main_process_port.`);
  }
  const local = resolved.localProcesses;

  // World.
  put('WORLD_SIZE', String(resolved.numProcesses), c.numProcesses);
  put('LOCAL_WORLD_SIZE', String(local));
  put('GROUP_RANK', String(resolved.machineRank), c.machineRank);
  put('NODE_RANK', String(resolved.machineRank));
  put('GROUP_WORLD_SIZE', String(resolved.numMachines), c.numMachines);
  put('ROLE_NAME', resolved.role);
  put('ROLE_WORLD_SIZE', String(resolved.numProcesses));
  put(
    'MASTER_ADDR',
    masterAddr,
    resolved.mainProcessIp ? c.mainProcessIp : { source: 'default', detail: 'this machine (127.0.0.1)' },
  );
  const portOrigin =
    options.port !== undefined && options.port !== resolved.mainProcessPort
      ? { source: 'default' as const, detail: 'a free port chosen by accelerate launch' }
      : c.mainProcessPort;
  put('MASTER_PORT', String(masterPort), portOrigin);

  // CPU threads.
  let threads = resolved.numCpuThreadsPerProcess;
  if (threads === undefined) {
    const inherited = Number(baseEnv.OMP_NUM_THREADS);
    if (baseEnv.OMP_NUM_THREADS && Number.isInteger(inherited) && inherited > 0) threads = inherited;
    else threads = Math.max(1, Math.floor((options.cpuCount ?? 1) / local));
  }
  put('OMP_NUM_THREADS', String(threads));

  // Accelerate's own settings.
  if (resolved.mixedPrecision !== 'no') put('ACCELERATE_MIXED_PRECISION', resolved.mixedPrecision, c.mixedPrecision);
  if (resolved.cpu) {
    put('ACCELERATE_USE_CPU', 'true', c.cpu);
    // Intel OpenMP settings Accelerate uses on CPU (ignored by other OpenMP runtimes).
    if (baseEnv.KMP_AFFINITY === undefined) put('KMP_AFFINITY', 'granularity=fine,compact,1,0');
    if (baseEnv.KMP_BLOCKTIME === undefined) put('KMP_BLOCKTIME', '1');
  }
  if (resolved.debug) put('ACCELERATE_DEBUG_MODE', 'true', c.debug);
  if (resolved.processGroupTimeout !== undefined) {
    put('ACCELERATE_PROCESS_GROUP_TIMEOUT', String(resolved.processGroupTimeout), c.processGroupTimeout);
  }
  if (resolved.gradientAccumulationSteps !== undefined) {
    put('ACCELERATE_GRADIENT_ACCUMULATION_STEPS', String(resolved.gradientAccumulationSteps), c.gradientAccumulationSteps);
  }
  if (v.enable_cpu_affinity === true) put('ACCELERATE_CPU_AFFINITY', '1', origin('enable_cpu_affinity'));
  const gpuIds = str(v.gpu_ids);
  if (gpuIds !== 'all' && gpuIds !== '') put('CUDA_VISIBLE_DEVICES', gpuIds);
  if (c.distributedType.source !== 'default') put(DISTRIBUTED_TYPE_ENV_VAR, c.distributedType.value, c.distributedType);

  // The plugin sections (spec §10's table), exported row by row from the settings table; the plugins read these variables.
  const sections = resolved.sections;
  const exportOf = (section: SettingSectionName) => {
    for (const { name, value, origin: from } of exportSection(section, sections[section])) {
      put(name, value, from);
    }
  };
  const dynamo = sections.dynamo.backend.value;
  if (dynamo !== undefined && dynamo !== 'NO') exportOf('dynamo');
  if (resolved.paradigm === 'fsdp') {
    put('ACCELERATE_USE_FSDP', 'true', c.distributedType);
    exportOf('fsdp');
  }
  if (resolved.paradigm === 'deepspeed') {
    put('ACCELERATE_USE_DEEPSPEED', 'true', c.distributedType);
    put('ACCELERATE_CONFIG_DS_FIELDS', deepspeedFieldsFromFile(resolved).join(','));
    exportOf('deepspeed');
    const launcher = sections.deepspeed.multinodeLauncher;
    if (resolved.numMachines > 1 && launcher.source !== 'default' && launcher.value !== 'standard') {
      warnings.push(
        `deepspeed_multinode_launcher ${launcher.value} is not used: accelerate-ts starts the ranks of each machine itself (like the "standard" launcher); run accelerate launch on every machine.`,
      );
    }
  }
  if (resolved.paradigm === 'megatron_lm') {
    put('ACCELERATE_USE_MEGATRON_LM', 'true', c.distributedType);
    exportOf('megatron');
  }
  if (resolved.useParallelismConfig) {
    put('ACCELERATE_USE_PARALLELISM_CONFIG', 'true', origin('use_parallelism_config'));
    exportOf('parallelism');
  }
  if (resolved.mixedPrecision === 'fp8') exportOf('fp8');

  if (resolved.configFile) put(CONFIG_FILE_ENV_VAR, resolved.configFile.path);
  // The ranks read what is exported here and do not parse the config file again.
  put(CONFIG_EXPORTED_ENV_VAR, '1');
  // Provenance: only for what is exported (a child's resolveConfig consults it per variable).
  put(PROVENANCE_ENV_VAR, encodeProvenanceEnv(provenance));

  const ranks: RankPlan[] = [];
  for (let localRank = 0; localRank < local; localRank++) {
    const rank = resolved.machineRank * local + localRank;
    ranks.push({
      rank,
      localRank,
      env: Object.freeze({ ...env, RANK: String(rank), LOCAL_RANK: String(localRank), ROLE_RANK: String(rank) }),
    });
  }

  return Object.freeze({
    numProcesses: resolved.numProcesses,
    numMachines: resolved.numMachines,
    machineRank: resolved.machineRank,
    localProcesses: local,
    masterAddr,
    masterPort,
    threadsPerProcess: threads,
    commonEnv: Object.freeze(env),
    unsetEnv: Object.freeze([...unset]),
    ranks: Object.freeze(ranks),
    command: options.command,
    warnings: Object.freeze(warnings),
  });
}

/** DeepSpeed settings that came from the config file (Python's `deepspeed_fields_from_accelerate_config`). */
function deepspeedFieldsFromFile(resolved: ResolvedLaunch): string[] {
  const out: string[] = [];
  for (const [name, origin] of Object.entries(resolved.origins)) {
    if (origin.source === 'config file' && origin.detail.includes('(deepspeed_config.')) out.push(name);
  }
  // Python counts it whenever the file takes part and no flag set it (the file always has a mixed_precision).
  if (resolved.configFile && resolved.config.mixedPrecision.source !== 'launch flag') out.push('mixed_precision');
  return out.sort();
}

/** The environment a rank process starts with: the launcher's, minus {@link LaunchPlan.unsetEnv}, plus the rank's variables. */
export function rankEnvironment(plan: LaunchPlan, rank: RankPlan, baseEnv: EnvironmentVariables = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(baseEnv)) if (val !== undefined && !plan.unsetEnv.includes(k)) out[k] = val;
  return Object.assign(out, rank.env);
}

const TS_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.tsx']);
const JS_EXTENSIONS = new Set(['.js', '.mjs', '.cjs']);

/** Options of {@link resolveScriptCommand}. */
export interface ScriptCommandOptions {
  /** Working directory the script path is relative to. Default `process.cwd()`. */
  cwd?: string;
  /** Node executable. Default `process.execPath`. */
  nodePath?: string;
  /** Extra node options placed before the script (e.g. `--enable-source-maps`). */
  nodeOptions?: readonly string[];
  /** Add the guard that ends a rank when the launcher dies (default true). */
  guard?: boolean;
}

/**
 * How each rank runs `script`: `.js`/`.mjs`/`.cjs` with node, `.ts`/`.mts`/`.cts`
 * with node and tsx (`node --import tsx`), `--module` resolves a module
 * specifier from the working directory, `--no_python` runs a program as is.
 * Node ranks also load a small guard that ends the rank (and its children)
 * if the launcher disappears without stopping it (e.g. `kill -9`).
 */
export function resolveScriptCommand(
  script: string,
  scriptArgs: readonly string[],
  flags: { module?: boolean; noPython?: boolean },
  options: ScriptCommandOptions = {},
): ScriptCommand {
  const cwd = options.cwd ?? process.cwd();
  if (flags.noPython) return { command: script, args: [...scriptArgs], runner: 'program' };
  let file: string;
  if (flags.module) {
    try {
      file = createRequire(join(cwd, 'noop.js')).resolve(script);
    } catch (e) {
      throw new LaunchError(
        `--module: cannot resolve ${JSON.stringify(script)} from ${cwd} (${(e as Error).message.split('\n')[0]}). Install the package or pass the script's path without --module.`,
      );
    }
  } else {
    file = isAbsolute(script) ? script : resolve(cwd, script);
    if (!existsSync(file)) {
      throw new LaunchError(`The training script ${JSON.stringify(script)} does not exist (looked for ${file}). Check the path, relative to ${cwd}.`);
    }
  }
  const ext = extname(file).toLowerCase();
  const nodeArgs: string[] = [...(options.nodeOptions ?? [])];
  let runner: ScriptCommand['runner'] = 'node';
  if (TS_EXTENSIONS.has(ext)) {
    const tsx = findTsx([dirname(file), cwd, dirname(fileURLToPath(import.meta.url))]);
    if (!tsx) {
      throw new LaunchError(
        `${script} is TypeScript, which needs tsx to run: install it (npm install -D tsx) or compile the script to .js and launch that.`,
      );
    }
    nodeArgs.push('--import', tsx);
    runner = 'node + tsx';
  } else if (!JS_EXTENSIONS.has(ext)) {
    throw new LaunchError(
      `accelerate launch runs .ts, .mts, .js or .mjs scripts; ${JSON.stringify(script)} is none of them. To start another program in every rank, add --no_python.`,
    );
  }
  if (options.guard !== false) {
    const guard = childGuardUrl(runner === 'node + tsx');
    if (guard) nodeArgs.push('--import', guard);
  }
  return { command: options.nodePath ?? process.execPath, args: [...nodeArgs, file, ...scriptArgs], runner };
}

/** tsx's loader as a file URL, resolved from the first folder that has it. */
function findTsx(from: readonly string[]): string | undefined {
  for (const dir of from) {
    try {
      return pathToFileURL(createRequire(join(dir, 'noop.js')).resolve('tsx')).href;
    } catch {
      // not installed there
    }
  }
  return undefined;
}

/** The guard module's URL: the built `.js`, or the `.ts` source when the rank runs under tsx. */
function childGuardUrl(underTsx: boolean): string | undefined {
  const js = new URL('./child-guard.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return js.href;
  const ts = new URL('./child-guard.ts', import.meta.url);
  if (underTsx && existsSync(fileURLToPath(ts))) return ts.href;
  return undefined;
}
