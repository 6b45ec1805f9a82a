/**
 * The flags of `accelerate launch`, as one table: Python Accelerate's names
 * (snake_case), their types, defaults and help, and how accelerate-ts treats
 * each one. The CLI builds its options from this table and the launcher
 * merges flags with the config file by these names, so both always agree.
 * @module
 */
import { strToBoolOrUndefined, sectionLaunchFlags } from '../config/settings.js';
import { suggestClosest } from '../config/errors.js';

/** A flag's value once parsed. */
export type LaunchValue = string | number | boolean | readonly string[];

/**
 * How a flag's text is read:
 * `boolean` is a switch (`--cpu`); `boolish` takes `true`/`false`/`yes`/`no`…
 * (`--fsdp_offload_params true`); `list` may be repeated.
 */
export type LaunchFlagType = 'boolean' | 'boolish' | 'integer' | 'number' | 'string' | 'list';

/** Help groups, as Python's `accelerate launch --help` shows them. */
export type LaunchFlagGroup =
  | 'general'
  | 'hardware'
  | 'resources'
  | 'paradigm'
  | 'distributed'
  | 'tpu'
  | 'deepspeed'
  | 'fsdp'
  | 'megatron_lm'
  | 'fp8'
  | 'aws'
  | 'mpirun'
  | 'parallelism';

/**
 * What accelerate-ts does with a flag:
 * - `native`: the launcher acts on it (process count, rendezvous, output, …);
 * - `env`: exported to the ranks as Accelerate's environment variables
 *   (§10's table) for the plugins that read them (FSDP, DeepSpeed,
 *   Megatron-LM, FP8, parallelism, dynamo), exactly as Python exports them;
 * - `unsupported`: refused with an error that says so (TPU, SageMaker, mpirun).
 */
export type LaunchFlagSupport = 'native' | 'env' | 'unsupported';

/** One flag of `accelerate launch`. */
export interface LaunchFlagSpec {
  /** Python's name without dashes: `num_processes` (the CLI also accepts `--num-processes`). */
  readonly name: string;
  readonly type: LaunchFlagType;
  readonly group: LaunchFlagGroup;
  readonly help: string;
  /** One-letter alias (`-q`, `-m`, `-t`). */
  readonly short?: string;
  /** Allowed values (compared case-insensitively, stored as listed here). */
  readonly choices?: readonly string[];
  /** Value when neither a flag nor the config file gives one (Python's argparse default). */
  readonly default?: LaunchValue;
  readonly support: LaunchFlagSupport;
  /** Placeholder in help (`<n>`). */
  readonly valueName?: string;
}


const f = (
  name: string,
  type: LaunchFlagType,
  group: LaunchFlagGroup,
  support: LaunchFlagSupport,
  help: string,
  extra: Partial<Pick<LaunchFlagSpec, 'short' | 'choices' | 'default' | 'valueName'>> = {},
): LaunchFlagSpec => ({ name, type, group, support, help, ...extra });

const UNSUPPORTED_TPU = 'TPU launching is not supported by accelerate-ts.';

/** Every flag of `accelerate launch`, in Python's help order. */
export const LAUNCH_FLAGS: readonly LaunchFlagSpec[] = [
  // general
  f('config_file', 'string', 'general', 'native', 'Config file to read defaults from (default: $HF_HOME/accelerate/default_config.yaml when it exists).', { valueName: 'path' }),
  f('quiet', 'boolean', 'general', 'native', "Print each rank's output as is, without the `[rank N]` prefix, and a shorter failure summary.", { short: 'q' }),
  f('module', 'boolean', 'general', 'native', 'Treat the script as a module name resolved from the working directory (like `python -m`).', { short: 'm' }),
  f('no_python', 'boolean', 'general', 'native', 'Run the script as an executable, without node.'),
  f('debug', 'boolean', 'general', 'native', 'Check collectives across ranks for shape mismatches (ACCELERATE_DEBUG_MODE).'),
  // hardware
  f('cpu', 'boolean', 'hardware', 'native', 'Train on the CPU even when an accelerator exists (ACCELERATE_USE_CPU).'),
  f('multi_gpu', 'boolean', 'hardware', 'native', 'Distributed training on several GPUs (needs at least 2 processes).'),
  f('tpu', 'boolean', 'hardware', 'unsupported', UNSUPPORTED_TPU),
  // resources
  f('mixed_precision', 'string', 'resources', 'native', 'Mixed precision: no, fp16, bf16 or fp8.', { choices: ['no', 'fp16', 'bf16', 'fp8'], valueName: 'mode' }),
  f('num_processes', 'integer', 'resources', 'native', 'Total number of processes, over all machines.', { valueName: 'n' }),
  f('num_machines', 'integer', 'resources', 'native', 'Number of machines taking part.', { valueName: 'n' }),
  f('num_cpu_threads_per_process', 'integer', 'resources', 'native', 'CPU threads per process (OMP_NUM_THREADS); default: the cores divided among the local processes.', { valueName: 'n' }),
  f('enable_cpu_affinity', 'boolean', 'resources', 'env', 'Pin each process to the cores of its NUMA node (ACCELERATE_CPU_AFFINITY).'),
  ...sectionLaunchFlags('dynamo'),
  // training paradigm
  f('use_deepspeed', 'boolean', 'paradigm', 'env', 'Use DeepSpeed (exports ACCELERATE_USE_DEEPSPEED and the DeepSpeed settings).'),
  f('use_fsdp', 'boolean', 'paradigm', 'env', 'Use FSDP (exports ACCELERATE_USE_FSDP and FSDP_*).'),
  f('use_parallelism_config', 'boolean', 'paradigm', 'env', 'Use the N-D parallelism config (needs --use_fsdp --fsdp_version 2).'),
  f('use_megatron_lm', 'boolean', 'paradigm', 'env', 'Use Megatron-LM (exports ACCELERATE_USE_MEGATRON_LM and MEGATRON_LM_*).'),
  // distributed
  f('gpu_ids', 'string', 'distributed', 'native', 'Comma-separated device ids this machine uses, or `all` (sets CUDA_VISIBLE_DEVICES).', { valueName: 'ids' }),
  f('same_network', 'boolean', 'distributed', 'native', 'All machines share one network (accelerate-ts always rendezvous at main_process_ip:main_process_port).'),
  f('machine_rank', 'integer', 'distributed', 'native', 'Rank of this machine, 0 .. num_machines-1.', { valueName: 'rank' }),
  f('timeout', 'number', 'distributed', 'native', 'Seconds a collective or the rendezvous may wait before failing (ACCELERATE_PROCESS_GROUP_TIMEOUT); default 1800, as InitProcessGroupKwargs. InitProcessGroupKwargs(timeoutSeconds) in code wins.', { valueName: 'seconds' }),
  f('main_process_ip', 'string', 'distributed', 'native', 'Address of the machine running rank 0.', { valueName: 'ip' }),
  f('main_process_port', 'integer', 'distributed', 'native', 'Port of rank 0; 0 or absent on one machine = a free port.', { valueName: 'port' }),
  f('tee', 'string', 'distributed', 'native', 'With --log_dir: also write 1 = stdout, 2 = stderr, 3 = both to log files (per rank: "0:3,1:1").', { short: 't', default: '0', valueName: 'streams' }),
  f('log_dir', 'string', 'distributed', 'native', 'Folder for per-rank log files (rank_<N>/stdout.log, stderr.log), selected by --tee.', { valueName: 'dir' }),
  f('role', 'string', 'distributed', 'native', 'Role name of the workers (ROLE_NAME).', { default: 'default', valueName: 'name' }),
  f('rdzv_backend', 'string', 'distributed', 'native', 'Rendezvous backend; accelerate-ts uses static rendezvous at main_process_ip:main_process_port.', { default: 'static', valueName: 'name' }),
  f('rdzv_conf', 'string', 'distributed', 'native', 'Extra rendezvous settings (not used by static rendezvous).', { default: '', valueName: 'conf' }),
  f('max_restarts', 'integer', 'distributed', 'native', 'Restarts of the worker group before failing; only 0 is supported.', { default: 0, valueName: 'n' }),
  f('monitor_interval', 'number', 'distributed', 'native', 'Seconds between worker checks (the launcher is event-driven and reacts at once).', { default: 0.1, valueName: 'seconds' }),
  // TPU
  f('tpu_cluster', 'boolean', 'tpu', 'unsupported', UNSUPPORTED_TPU),
  f('no_tpu_cluster', 'boolean', 'tpu', 'unsupported', UNSUPPORTED_TPU),
  f('tpu_use_sudo', 'boolean', 'tpu', 'unsupported', UNSUPPORTED_TPU),
  f('vm', 'list', 'tpu', 'unsupported', UNSUPPORTED_TPU, { valueName: 'name' }),
  f('env', 'list', 'tpu', 'unsupported', UNSUPPORTED_TPU, { valueName: 'var' }),
  f('main_training_function', 'string', 'tpu', 'unsupported', UNSUPPORTED_TPU, { valueName: 'name' }),
  f('downcast_bf16', 'boolean', 'tpu', 'unsupported', UNSUPPORTED_TPU),
  // DeepSpeed
  ...sectionLaunchFlags('deepspeed'),
  f('gradient_accumulation_steps', 'integer', 'deepspeed', 'native', 'Gradient accumulation steps (ACCELERATE_GRADIENT_ACCUMULATION_STEPS).', { valueName: 'n' }),
  // FSDP, Megatron-LM, FP8, parallelism, dynamo and DeepSpeed: one flag per row of the settings table (config/settings.ts)
  ...sectionLaunchFlags('fsdp'),
  // Megatron-LM
  ...sectionLaunchFlags('megatron'),
  // FP8
  ...sectionLaunchFlags('fp8'),
  // AWS / MPI
  f('aws_access_key_id', 'string', 'aws', 'unsupported', 'SageMaker launching is not supported by accelerate-ts.', { valueName: 'id' }),
  f('aws_secret_access_key', 'string', 'aws', 'unsupported', 'SageMaker launching is not supported by accelerate-ts.', { valueName: 'key' }),
  f('mpirun_hostfile', 'string', 'mpirun', 'unsupported', 'mpirun launching is not supported by accelerate-ts: start the script with mpirun yourself, it joins through the OMPI_*/PMI_* variables.', { valueName: 'path' }),
  // parallelism config
  ...sectionLaunchFlags('parallelism'),
];

const BY_NAME = new Map(LAUNCH_FLAGS.map((s) => [s.name, s]));

/** The spec of flag `name` (snake_case, without dashes), or undefined. */
export function launchFlag(name: string): LaunchFlagSpec | undefined {
  return BY_NAME.get(name);
}

/**
 * Thrown when a launch flag, a config value or a combination of them is
 * wrong. The message names the flag, the value and how to fix it.
 */
export class LaunchError extends Error {
  override name = 'LaunchError';
  /**
   * Every problem found, when the launch settings were checked as a whole
   * (the message then lists them all); otherwise just this error's message.
   */
  readonly problems: readonly string[];
  constructor(message: string, problems?: readonly string[]) {
    super(message);
    this.problems = problems ?? [message];
  }
}

/** Python-style bool text (`true`, `False`, `yes`, `0`, …) -> boolean, or undefined when it is none of them. */
const readBool = strToBoolOrUndefined;

/**
 * Reads one flag value from its command-line text, checking type and
 * choices. Errors name the flag (`--num_processes`), the value and what is
 * allowed.
 */
export function parseLaunchFlagValue(spec: LaunchFlagSpec, raw: string): LaunchValue {
  const flag = `--${spec.name}`;
  const text = raw.trim();
  switch (spec.type) {
    case 'boolean':
    case 'boolish': {
      const b = readBool(text);
      if (b === undefined) throw new LaunchError(`${flag} got ${JSON.stringify(raw)}; pass true or false (also yes/no, 1/0).`);
      return b;
    }
    case 'integer': {
      if (!/^[+-]?\d+$/.test(text)) throw new LaunchError(`${flag} got ${JSON.stringify(raw)}, which is not a whole number; pass e.g. ${flag} ${spec.default ?? 2}.`);
      return Number(text);
    }
    case 'number': {
      const n = Number(text);
      if (text === '' || !Number.isFinite(n)) throw new LaunchError(`${flag} got ${JSON.stringify(raw)}, which is not a number; pass e.g. ${flag} ${spec.default ?? (spec.valueName === 'seconds' ? 600 : 1)}.`);
      return n;
    }
    case 'list':
      return [raw];
    case 'string': {
      if (!spec.choices) return raw;
      const hit = spec.choices.find((c) => c.toLowerCase() === text.toLowerCase());
      if (hit !== undefined) return hit;
      const near = suggestClosest(text, spec.choices);
      throw new LaunchError(
        `${flag} got ${JSON.stringify(raw)}; choose one of ${spec.choices.join(', ')}${near ? ` (did you mean ${near}?)` : ''}.`,
      );
    }
  }
}

/**
 * Checks a value that came from code or a config file against the flag's
 * type (numbers as numbers, booleans as booleans or Python bool strings) and
 * returns it normalised; `where` names its origin in the error.
 */
export function coerceLaunchValue(spec: LaunchFlagSpec, value: unknown, where: string): LaunchValue {
  if (typeof value === 'string' && spec.type !== 'string' && spec.type !== 'list') {
    try {
      return parseLaunchFlagValue(spec, value);
    } catch (e) {
      throw new LaunchError(`${where}: ${(e as Error).message}`);
    }
  }
  const bad = (expected: string) =>
    new LaunchError(`${where} has value ${JSON.stringify(value)} for ${spec.name}, expected ${expected}.`);
  switch (spec.type) {
    case 'boolean':
    case 'boolish':
      if (typeof value !== 'boolean') throw bad('true or false');
      return value;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) throw bad('a whole number');
      return value;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw bad('a number');
      return value;
    case 'list':
      if (typeof value === 'string') return [value];
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw bad('a list of strings');
      return value as string[];
    case 'string':
      if (typeof value === 'number' || typeof value === 'boolean') return coerceLaunchValue(spec, String(value), where);
      if (typeof value !== 'string') throw bad('a string');
      return parseLaunchFlagValue(spec, value);
  }
}
