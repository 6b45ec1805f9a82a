/**
 * `accelerate launch`'s arguments merged with the config file, as Python
 * Accelerate merges them: flags the user passed win; every other setting
 * comes from the config file (its dict sections flattened into flag names,
 * `fsdp_config.offload_params` -> `fsdp_offload_params`), then from the
 * flag defaults. Each value remembers where it came from, so the ranks'
 * provenance report can say "launch flag --mixed_precision" or "config file
 * /x.yaml (mixed_precision)".
 *
 * The core settings (precision, world, port, GA, CPU, debug, dynamo backend,
 * timeout, distributed type) and the plugin sections are merged by the
 * configuration's own resolver ({@link resolveLaunchConfig}, the rows
 * `resolveConfig` reads in the ranks); this module adds the launch-only
 * settings (script, tee, log_dir, role, threads, …) and the launcher's checks.
 * @module
 */
import { PROCESS_GROUP_TIMEOUT_ENV } from '../config/timeout.js';
import type { MixedPrecision } from '../interfaces/backend.js';
import type { EnvironmentVariables } from '../state/environment.js';
import { resolveLaunchConfig, type ConfigSource, type ResolvedConfig, type ResolvedSetting, type ResolvedValues } from '../config/resolve.js';
import { findDefaultConfigFile, loadConfigFile, type LoadedConfigFile } from '../config/file.js';
import { suggestClosest } from '../config/errors.js';
import type { ClusterConfigFile } from '../config/schema.js';
import type { ResolvedSections } from '../config/settings.js';
import { coerceLaunchValue, LAUNCH_FLAGS, launchFlag, LaunchError, type LaunchValue } from './flags.js';

/**
 * Arguments of `accelerate launch` (and of {@link resolveLaunchArgs}), in
 * camelCase. `undefined` means "not passed": the config file or the
 * default decides. Flags without a field here (FSDP, DeepSpeed, Megatron-LM,
 * FP8, parallelism, dynamo details, …) go in {@link LaunchArgs.extra} under
 * their snake_case flag names.
 */
export interface LaunchArgs {
  /** The script to run (a `.ts`, `.mts`, `.js` or `.mjs` file; a module with `module`; a program with `noPython`). */
  script?: string;
  /** Arguments passed to the script untouched. */
  scriptArgs?: readonly string[];
  /** Config file; default `$HF_HOME/accelerate/default_config.yaml` when it exists (and `cpu` is not set). */
  configFile?: string;
  /** Print rank output without the `[rank N]` prefix, and a shorter failure summary. */
  quiet?: boolean;
  /** Resolve `script` as a module specifier from the working directory. */
  module?: boolean;
  /** Run `script` as an executable, without node. */
  noPython?: boolean;
  /** Cross-rank shape checks on collectives (ACCELERATE_DEBUG_MODE). */
  debug?: boolean;
  /** Force the CPU (ACCELERATE_USE_CPU); also skips the default config file, as in Python. */
  cpu?: boolean;
  multiGpu?: boolean;
  tpu?: boolean;
  mixedPrecision?: MixedPrecision;
  /** Total processes over all machines. */
  numProcesses?: number;
  numMachines?: number;
  /** OMP_NUM_THREADS for each rank. */
  numCpuThreadsPerProcess?: number;
  enableCpuAffinity?: boolean;
  dynamoBackend?: string;
  useDeepspeed?: boolean;
  useFsdp?: boolean;
  useParallelismConfig?: boolean;
  useMegatronLm?: boolean;
  gpuIds?: string;
  sameNetwork?: boolean;
  machineRank?: number;
  mainProcessIp?: string;
  /** 0 (or absent on one machine) picks a free port. */
  mainProcessPort?: number;
  /** Which streams go to the log files of `logDir`: `0`-`3`, or per rank `0:3,1:1`. */
  tee?: string;
  logDir?: string;
  role?: string;
  rdzvBackend?: string;
  rdzvConf?: string;
  /** Only 0 is supported. */
  maxRestarts?: number;
  monitorInterval?: number;
  gradientAccumulationSteps?: number;
  /** Collective and rendezvous timeout in seconds (`--timeout`, ACCELERATE_PROCESS_GROUP_TIMEOUT). */
  timeout?: number;
  /** Any other flag of {@link LAUNCH_FLAGS} by its snake_case name, e.g. `{ fsdp_offload_params: true }`. */
  extra?: Readonly<Record<string, LaunchValue>>;
}

/** Where a launch setting came from (a subset of the configuration sources). */
export interface LaunchValueOrigin {
  readonly source: Extract<ConfigSource, 'launch flag' | 'config file' | 'default'>;
  /** `--mixed_precision`, `/x/default_config.yaml (fsdp_config.fsdp_offload_params)`, or a note for defaults. */
  readonly detail: string;
}

/** How the processes are organised: Accelerate's launcher choice, for the env it exports. */
export type LaunchParadigm = 'simple' | 'multi_gpu' | 'deepspeed' | 'fsdp' | 'megatron_lm';

/** Launch settings after merging flags, config file and defaults, validated. */
export interface ResolvedLaunch {
  readonly script: string | undefined;
  readonly scriptArgs: readonly string[];
  readonly module: boolean;
  readonly noPython: boolean;
  readonly quiet: boolean;
  readonly debug: boolean;
  readonly cpu: boolean;
  readonly mixedPrecision: MixedPrecision;
  readonly numProcesses: number;
  readonly numMachines: number;
  readonly machineRank: number;
  /** Processes on this machine: numProcesses / numMachines. */
  readonly localProcesses: number;
  readonly mainProcessIp: string | undefined;
  /** Undefined when not given (a free port on one machine, 29500 on several); 0 = pick a free port. */
  readonly mainProcessPort: number | undefined;
  readonly numCpuThreadsPerProcess: number | undefined;
  readonly gradientAccumulationSteps: number | undefined;
  /** Collective timeout in seconds from `--timeout` or the launcher's ACCELERATE_PROCESS_GROUP_TIMEOUT; undefined = the default. */
  readonly processGroupTimeout: number | undefined;
  readonly paradigm: LaunchParadigm;
  readonly useParallelismConfig: boolean;
  readonly tee: string;
  readonly logDir: string | undefined;
  readonly role: string;
  /** Every setting by its snake_case flag name (Python's `args` namespace), including flattened config-file keys. */
  readonly values: Readonly<Record<string, LaunchValue>>;
  /** Where each entry of `values` came from. */
  readonly origins: Readonly<Record<string, LaunchValueOrigin>>;
  /** The config file that took part, if any. */
  readonly configFile: LoadedConfigFile | null;
  /** Things the user should know (defaults used, ignored settings). */
  readonly warnings: readonly string[];
  /**
   * The plugin sections (FSDP, DeepSpeed, Megatron-LM, parallelism, dynamo,
   * FP8) as the launcher resolved them with the settings table — flags, then
   * the config file, then the launcher's defaults (Python's argparse ones) —
   * each value with its origin. The launcher exports them to the ranks.
   */
  readonly sections: ResolvedSections;
  /** The `distributed_type` the ranks get (from the config file or `--multi_gpu`), with its origin; undefined = none. */
  readonly distributedType: { readonly value: string; readonly origin: LaunchValueOrigin } | undefined;
  /**
   * The configuration as the launcher resolved it (launch flags > the
   * launcher's ACCELERATE_PROCESS_GROUP_TIMEOUT > config file > defaults), every
   * core setting and plugin section with its source: what the ranks get,
   * exported variable by variable ({@link ResolvedConfig.report} is the same
   * table a rank reports).
   */
  readonly config: ResolvedConfig;
}

/** Options of {@link resolveLaunchArgs}. */
export interface ResolveLaunchOptions {
  /** Environment used to find the default config file (`HF_HOME`, …). Default `process.env`. */
  env?: EnvironmentVariables;
  /** Use this config file instead of reading `args.configFile` / the default one; `null` = none. */
  configFile?: LoadedConfigFile | null;
}

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camel = (name: string) => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

const TYPED_FIELDS: readonly (keyof LaunchArgs)[] = [
  'configFile', 'quiet', 'module', 'noPython', 'debug', 'cpu', 'multiGpu', 'tpu', 'mixedPrecision', 'numProcesses',
  'numMachines', 'numCpuThreadsPerProcess', 'enableCpuAffinity', 'dynamoBackend', 'useDeepspeed', 'useFsdp',
  'useParallelismConfig', 'useMegatronLm', 'gpuIds', 'sameNetwork', 'machineRank', 'mainProcessIp', 'mainProcessPort',
  'tee', 'logDir', 'role', 'rdzvBackend', 'rdzvConf', 'maxRestarts', 'monitorInterval', 'gradientAccumulationSteps',
  'timeout',
];
const TYPED_SNAKE = new Set(TYPED_FIELDS.map((k) => snake(k)));

/**
 * Turns flags keyed by their snake_case names (as the CLI parses them:
 * `{ num_processes: 2, fsdp_offload_params: true }`) into {@link LaunchArgs}.
 * Unknown names throw, with the closest known flag.
 */
export function launchArgsFromFlags(
  flags: Readonly<Record<string, LaunchValue | undefined>>,
  script?: string,
  scriptArgs: readonly string[] = [],
): LaunchArgs {
  const args: Record<string, unknown> = { script, scriptArgs };
  const extra: Record<string, LaunchValue> = {};
  for (const [name, value] of Object.entries(flags)) {
    if (value === undefined) continue;
    if (!launchFlag(name)) {
      const near = suggestClosest(name, LAUNCH_FLAGS.map((s) => s.name));
      throw new LaunchError(`--${name} is not a flag of accelerate launch${near ? `; did you mean --${near}?` : '.'}`);
    }
    if (TYPED_SNAKE.has(name)) args[camel(name)] = value;
    else extra[name] = value;
  }
  if (Object.keys(extra).length > 0) args.extra = extra;
  return args as LaunchArgs;
}

/** Python's `args` namespace for the flags the user passed (snake_case -> value). */
function passedFlags(args: LaunchArgs): Map<string, LaunchValue> {
  const out = new Map<string, LaunchValue>();
  for (const field of TYPED_FIELDS) {
    const value = args[field];
    if (value === undefined || value === null) continue;
    const spec = launchFlag(snake(field))!;
    out.set(spec.name, coerceLaunchValue(spec, value, `--${spec.name}`));
  }
  for (const [name, value] of Object.entries(args.extra ?? {})) {
    if (value === undefined || value === null) continue;
    const spec = launchFlag(name);
    if (!spec) {
      const near = suggestClosest(name, LAUNCH_FLAGS.map((s) => s.name));
      throw new LaunchError(`${name} is not a flag of accelerate launch${near ? `; did you mean ${near}?` : ''}.`);
    }
    if (TYPED_SNAKE.has(name)) {
      throw new LaunchError(`Pass ${name} as the ${camel(name)} field of the launch arguments, not in extra.`);
    }
    out.set(name, coerceLaunchValue(spec, value, `--${name}`));
  }
  return out;
}

const MULTI_DEVICE_TYPES = new Set([
  'MULTI_GPU',
  'MULTI_NPU',
  'MULTI_MLU',
  'MULTI_SDAA',
  'MULTI_MUSA',
  'MULTI_XPU',
  'MULTI_HPU',
  'MULTI_NEURON',
]);
const PARADIGM_FLAGS = ['multi_gpu', 'tpu', 'use_deepspeed', 'use_fsdp', 'use_megatron_lm'] as const;

/** Config-file dict sections whose keys become flags (see {@link flattenedConfigKey}). */
const FLATTENED_SECTIONS = new Set(['fsdp_config', 'fp8_config', 'dynamo_config', 'deepspeed_config', 'megatron_lm_config', 'parallelism_config', 'mpirun_config']);

/** Python's rule: `fsdp_config.x` -> `fsdp_x` unless it starts with `fsdp`; `fp8_config.x` -> `fp8_x`; `dynamo_config.x` -> `dynamo_x`. */
export function flattenedConfigKey(section: string, key: string): string {
  if (section === 'fsdp_config') return key.startsWith('fsdp') ? key : `fsdp_${key}`;
  if (section === 'fp8_config') return key.startsWith('fp8') ? key : `fp8_${key}`;
  if (section === 'dynamo_config') return key.startsWith('dynamo_') ? key : `dynamo_${key}`;
  return key;
}

const asBool = (v: LaunchValue | undefined) => v === true;

/** Flags of core settings: merged by {@link resolveLaunchConfig}, not by the config-file loop here. */
const CORE_FLAGS: Readonly<Record<string, keyof ResolvedValues>> = {
  mixed_precision: 'mixedPrecision',
  num_processes: 'numProcesses',
  num_machines: 'numMachines',
  machine_rank: 'machineRank',
  main_process_ip: 'mainProcessIp',
  main_process_port: 'mainProcessPort',
  gradient_accumulation_steps: 'gradientAccumulationSteps',
  cpu: 'cpu',
  debug: 'debug',
  dynamo_backend: 'dynamoBackend',
  timeout: 'processGroupTimeout',
  use_deepspeed: 'useDeepspeed',
  use_fsdp: 'useFsdp',
  use_megatron_lm: 'useMegatronLm',
};
/** Core rows the launcher checks itself (its messages name the flag or key and the fix). */
const LAUNCHER_CHECKED = new Set([
  'numProcesses', 'numMachines', 'machineRank', 'mainProcessPort', 'gradientAccumulationSteps', 'processGroupTimeout',
  'num_processes', 'num_machines', 'machine_rank', 'main_process_port', 'deepspeed_config.gradient_accumulation_steps',
  PROCESS_GROUP_TIMEOUT_ENV,
]);

/** One message for several problems: a count, then one `  - ` line each (a problem's own lines indented under it). */
export function launchProblemsMessage(problems: readonly string[]): string {
  if (problems.length === 1) return problems[0];
  return `${problems.length} problems with the launch settings:\n${problems.map((p) => `  - ${p.replace(/\n/g, '\n    ')}`).join('\n')}`;
}

/**
 * Merges `args` with the config file and the flag defaults and validates the
 * result before anything is spawned. Errors ({@link LaunchError}, or the
 * config file's `ConfigError`) name the flag or key, the value and the fix.
 *
 * Which config file: `args.configFile` when given; otherwise the default
 * file when it exists, unless `cpu` is set (Python's rule).
 */
export function resolveLaunchArgs(args: LaunchArgs, options: ResolveLaunchOptions = {}): ResolvedLaunch {
  const env = options.env ?? process.env;
  const passed = passedFlags(args);
  const warnings: string[] = [];

  // Every problem found is collected and reported together, so one run shows all there is to fix.
  const problems: string[] = [];
  /** Throws one LaunchError listing every problem so far (plus `last`, when the checks cannot go on). */
  const report = (last?: string): never => {
    const all = last === undefined ? problems : [...problems, last];
    throw new LaunchError(launchProblemsMessage(all), all);
  };
  // Flags that accelerate-ts cannot act on at all.
  for (const [name] of passed) {
    const spec = launchFlag(name)!;
    if (spec.support === 'unsupported') {
      problems.push(`--${name} is not supported by accelerate-ts: ${spec.help} Remove the flag.`);
    }
  }

  // Python's sanity checks, on the flags as passed.
  const chosen = (['cpu', 'multi_gpu', 'tpu', 'use_deepspeed', 'use_fsdp'] as const).filter((n) => asBool(passed.get(n)));
  if (chosen.length > 1) {
    problems.push(
      `You can only use one of --cpu, --multi_gpu, --tpu, --use_deepspeed, --use_fsdp at a time; got ${chosen.map((n) => `--${n}`).join(' and ')}. Keep one of them.`,
    );
  }
  const flagProcs = passed.get('num_processes') as number | undefined;
  if (asBool(passed.get('multi_gpu')) && flagProcs !== undefined && flagProcs < 2) {
    problems.push(
      `--multi_gpu needs at least 2 processes, but --num_processes is ${flagProcs}. Pass --num_processes 2 (or more), or drop --multi_gpu to run one process.`,
    );
  }
  if (asBool(passed.get('module')) && asBool(passed.get('no_python'))) {
    problems.push('--module and --no_python cannot be used together: --module resolves a node module, --no_python runs a program. Keep one.');
  }

  // The config file.
  let file: LoadedConfigFile | null = null;
  try {
    if (options.configFile !== undefined) file = options.configFile;
    else if (args.configFile !== undefined) file = loadConfigFile(args.configFile);
    else if (!asBool(passed.get('cpu'))) {
      const found = findDefaultConfigFile(env);
      if (found) file = loadConfigFile(found);
    }
  } catch (e) {
    // The file's own problems (all of them, in one ConfigError) come with the flags' problems.
    if (problems.length > 0) report((e as Error).message);
    throw e;
  }
  if (file) warnings.push(...file.warnings.map((w) => `${file!.path}: ${w}`));
  if (file && file.config.compute_environment !== 'LOCAL_MACHINE') {
    report(
      `${file.path} describes an Amazon SageMaker setup (compute_environment: ${file.config.compute_environment}); accelerate-ts launches on local machines only. Use a LOCAL_MACHINE config (accelerate config).`,
    );
  }
  const cfg = file ? (file.config as ClusterConfigFile) : null;

  const values: Record<string, LaunchValue> = {};
  const origins: Record<string, LaunchValueOrigin> = {};
  const set = (name: string, value: LaunchValue, origin: LaunchValueOrigin) => {
    values[name] = value;
    origins[name] = origin;
  };
  for (const [name, value] of passed) set(name, value, { source: 'launch flag', detail: `--${name}` });
  const fromFile = (key: string): LaunchValueOrigin => ({ source: 'config file', detail: `${file!.path} (${key})` });
  const isPassed = (name: string) => passed.has(name);
  const isCore = (name: string) => Object.hasOwn(CORE_FLAGS, name) && name !== 'dynamo_backend';
  /** The value, or undefined with its LaunchError's message added to the problems. */
  const collect = (fn: () => LaunchValue): LaunchValue | undefined => {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof LaunchError)) throw e;
      problems.push(e.message);
      return undefined;
    }
  };

  if (cfg && file) {
    // Paradigm from distributed_type when no paradigm flag was given.
    if (!PARADIGM_FLAGS.some((n) => asBool(passed.get(n)))) {
      const dt = cfg.distributed_type;
      if (dt === 'XLA') {
        problems.push(`${file.path} has distributed_type: XLA (TPU); accelerate-ts cannot launch on TPUs. Use another config.`);
      }
      if (!isPassed('use_parallelism_config') && cfg.parallelism_config && Object.keys(cfg.parallelism_config).length > 0) {
        set('use_parallelism_config', true, fromFile('parallelism_config'));
      }
    }
    // Top-level keys fill flags that were not passed.
    for (const [key, raw] of Object.entries(cfg)) {
      if (key === 'compute_environment' || key === 'distributed_type') continue;
      if (raw === null || raw === undefined) continue;
      if (typeof raw === 'object' && !Array.isArray(raw)) {
        // Dict sections: flattened into flag names.
        if (!FLATTENED_SECTIONS.has(key)) continue;
        for (const [sub, subValue] of Object.entries(raw as Record<string, unknown>)) {
          if (subValue === null || subValue === undefined) continue;
          const name = flattenedConfigKey(key, sub);
          if (isPassed(name) || isCore(name)) continue;
          const spec = launchFlag(name);
          const where = `${file.path} (${key}.${sub})`;
          if (spec?.support === 'unsupported') {
            if (name === 'mpirun_hostfile') warnings.push(`${where}: mpirun is not used by accelerate-ts; the setting is ignored.`);
            continue;
          }
          // Keys that are not flags (e.g. fp8_config.amax_history_length) are kept as they are, for the env export.
          const value = spec ? collect(() => coerceLaunchValue(spec, subValue, where)) : toLaunchValue(subValue);
          if (value === undefined) continue;
          set(name, value, fromFile(`${key}.${sub}`));
        }
        continue;
      }
      if (key === 'use_cpu' || isCore(key)) continue;
      const spec = launchFlag(key);
      if (!spec || spec.support === 'unsupported' || isPassed(key)) continue;
      // Only keys the file really has: filled-in defaults of the schema do not override flag defaults.
      if (!file.present.has(key)) continue;
      const value = collect(() => coerceLaunchValue(spec, raw, `${file!.path} (${key})`));
      if (value !== undefined) set(key, value, fromFile(key));
    }
  }

  // The core settings: one merge, by the rows the ranks read back (launch flags > the launcher's
  // ACCELERATE_PROCESS_GROUP_TIMEOUT > config file > defaults; Python's launcher reads no other variable).
  const coreFlags: Record<string, LaunchValue> = {};
  for (const [flag, name] of Object.entries(CORE_FLAGS)) {
    const value = passed.get(flag);
    if (value === undefined || (name.startsWith('use') && value !== true)) continue;
    coreFlags[name] = value;
  }
  const flagNames: Partial<Record<keyof ResolvedValues, string>> = {};
  if (asBool(passed.get('multi_gpu')) && !PARADIGM_FLAGS.some((n) => n !== 'multi_gpu' && n !== 'tpu' && asBool(passed.get(n)))) {
    coreFlags.distributedType = 'MULTI_GPU';
    flagNames.distributedType = 'multi_gpu';
  }
  const timeoutText = env[PROCESS_GROUP_TIMEOUT_ENV];
  const { config, problems: configProblems } = resolveLaunchConfig({
    launchFlags: coreFlags as Partial<ResolvedValues>,
    launchFlagNames: flagNames,
    sectionFlags: Object.fromEntries(passed),
    env: timeoutText === undefined || timeoutText === '' ? {} : { [PROCESS_GROUP_TIMEOUT_ENV]: timeoutText },
    configFile: cfg ? file : null,
  });
  const originOf = (s: ResolvedSetting<unknown>): LaunchValueOrigin => ({ source: s.source as LaunchValueOrigin['source'], detail: s.detail });
  for (const [flag, name] of Object.entries(CORE_FLAGS)) {
    if (flag === 'dynamo_backend' || name.startsWith('use')) continue;
    const s = config[name];
    const always = flag === 'mixed_precision' || flag === 'num_processes' || flag === 'num_machines' || flag === 'machine_rank';
    if (always || s.source === 'launch flag' || s.source === 'config file') set(flag, s.value as LaunchValue, originOf(s));
  }
  // Without num_processes in the file, Python uses the schema's fill-in: 1 for distributed_type NO, else -1 (= ask at launch).
  if (cfg && !isPassed('num_processes') && cfg.num_processes === -1) set('num_processes', -1, fromFile('num_processes'));
  const dt = config.distributedType;
  const paradigm: LaunchParadigm =
    dt.value === 'DEEPSPEED'
      ? 'deepspeed'
      : dt.value === 'FSDP'
        ? 'fsdp'
        : dt.value === 'MEGATRON_LM'
          ? 'megatron_lm'
          : MULTI_DEVICE_TYPES.has(dt.value)
            ? 'multi_gpu'
            : 'simple';
  if (paradigm !== 'simple' && dt.source === 'config file') set(paradigm === 'multi_gpu' ? 'multi_gpu' : `use_${paradigm}`, true, originOf(dt));

  // Defaults of the flag table for the rest.
  const defaultsUsed: string[] = [];
  for (const spec of LAUNCH_FLAGS) {
    if (values[spec.name] !== undefined || spec.default === undefined) continue;
    set(spec.name, spec.default, { source: 'default', detail: '' });
  }
  for (const [name, note] of [
    ['num_processes', '`--num_processes` was set to a value of `1`'],
    ['num_machines', '`--num_machines` was set to a value of `1`'],
    ['mixed_precision', "`--mixed_precision` was set to a value of `'no'`"],
  ] as const) {
    if (!file && origins[name].source === 'default') defaultsUsed.push(note);
  }
  if (values.gpu_ids === undefined) set('gpu_ids', 'all', { source: 'default', detail: '' });
  if (defaultsUsed.length > 0 && args.script !== undefined) {
    warnings.push(
      `The following values were not passed to \`accelerate launch\` and had defaults used instead: ${defaultsUsed.join(', ')}. To avoid this warning pass in values for each of them or run \`accelerate config\`.`,
    );
  }

  // ---- validation of the merged values ----------------------------------------
  // Names the origin in errors: `--num_processes`, or `/x/default_config.yaml (num_processes)`.
  const describe = (name: string) => (origins[name]?.source === 'config file' ? origins[name].detail : `--${name}`);
  const numProcesses = values.num_processes as number;
  const numMachines = values.num_machines as number;
  const machineRank = values.machine_rank as number;
  if (numProcesses === -1 && origins.num_processes?.source === 'config file') {
    problems.push(
      `${file ? file.path : 'The config file'} has num_processes -1 (decide at launch time): pass --num_processes with the total number of processes.`,
    );
  } else if (numProcesses < 1) {
    problems.push(`${describe('num_processes')} is ${numProcesses}; it must be at least 1. Pass --num_processes 1 or more.`);
  }
  if (numMachines < 1) {
    problems.push(`${describe('num_machines')} is ${numMachines}; it must be at least 1. Pass --num_machines 1 for a single machine.`);
  } else if (machineRank < 0 || machineRank >= numMachines) {
    problems.push(
      `${describe('machine_rank')} is ${machineRank}, but with ${numMachines} machine${numMachines === 1 ? '' : 's'} it must be 0${numMachines > 1 ? `..${numMachines - 1}` : ''}. Pass --machine_rank 0 on the main machine and 1, 2, … on the others.`,
    );
  }
  if (numProcesses >= 1 && numMachines >= 1 && numProcesses % numMachines !== 0) {
    problems.push(
      `--num_processes ${numProcesses} is not divisible by --num_machines ${numMachines}: every machine runs the same number of processes. Pass a multiple of ${numMachines} (e.g. --num_processes ${numMachines * Math.max(1, Math.round(numProcesses / numMachines))}).`,
    );
  }
  const port = values.main_process_port as number | undefined;
  if (port !== undefined && (port < 0 || port > 65535)) {
    problems.push(`${describe('main_process_port')} is ${port}; a port is 0..65535 (0 picks a free port on one machine).`);
  }
  const ip = values.main_process_ip as string | undefined;
  if (numMachines > 1) {
    if (!ip) {
      problems.push(
        `This launch spans ${numMachines} machines but --main_process_ip is not set, so they cannot find each other. Pass --main_process_ip with the address of the machine running --machine_rank 0 (the same on every machine).`,
      );
    }
    if (port === 0) {
      problems.push(
        `--main_process_port 0 picks a free port on this machine, which the other ${numMachines - 1} machine${numMachines > 2 ? 's' : ''} cannot know. Pass the same fixed port (e.g. --main_process_port 29500) on every machine.`,
      );
    }
  }
  const maxRestarts = values.max_restarts as number;
  if (maxRestarts !== 0) {
    problems.push(
      `${describe('max_restarts')} is ${maxRestarts}, but accelerate-ts does not restart failed workers: a failing rank stops the whole launch. Pass --max_restarts 0 (the default) and restart the launch yourself, resuming from a checkpoint.`,
    );
  }
  const threads = values.num_cpu_threads_per_process as number | undefined;
  if (threads !== undefined && threads < 1) {
    problems.push(`${describe('num_cpu_threads_per_process')} is ${threads}; pass 1 or more.`);
  }
  // From a config file, only DeepSpeed's section sets it (the row's rule).
  const ga = values.gradient_accumulation_steps as number | undefined;
  if (ga !== undefined && ga < 1) {
    problems.push(`${describe('gradient_accumulation_steps')} is ${ga}; pass 1 or more.`);
  }
  // Checked here, before any rank starts: a bad value would otherwise fail every rank.
  const timeout = config.processGroupTimeout;
  const processGroupTimeout = timeout.value;
  if (timeout.source === 'launch flag') {
    if (!(Number.isFinite(processGroupTimeout) && processGroupTimeout! > 0)) {
      throw new LaunchError(`${describe('timeout')} is ${processGroupTimeout}; pass a positive number of seconds, e.g. --timeout 600 (10 minutes).`);
    }
  } else if (configProblems.some((p) => p.issue.key === PROCESS_GROUP_TIMEOUT_ENV)) {
    throw new LaunchError(
      `${PROCESS_GROUP_TIMEOUT_ENV}=${JSON.stringify(timeoutText)} is not a positive number of seconds. Set it to e.g. 600 (10 minutes), pass --timeout <seconds>, or unset it for the default (1800).`,
    );
  }
  const tee = String(values.tee);
  const teeValid = collect(() => (parseTee(tee), tee)) !== undefined;
  const logDir = values.log_dir as string | undefined;
  if (teeValid && tee !== '0' && !logDir) {
    problems.push(`--tee ${tee} writes rank output to log files, which need a folder: add --log_dir <dir>.`);
  }
  const rdzv = String(values.rdzv_backend);
  if (rdzv !== 'static') {
    warnings.push(
      `${describe('rdzv_backend')} is ${JSON.stringify(rdzv)}; accelerate-ts uses static rendezvous at main_process_ip:main_process_port, which works the same way when every machine passes the same address and port.`,
    );
  }
  if (values.rdzv_conf) warnings.push(`--rdzv_conf ${JSON.stringify(values.rdzv_conf)} is ignored: static rendezvous takes no options.`);

  const useParallelismConfig = asBool(values.use_parallelism_config);
  if (useParallelismConfig && (paradigm !== 'fsdp' || String(values.fsdp_version) === '1')) {
    problems.push('--use_parallelism_config needs FSDP version 2: add --use_fsdp --fsdp_version 2, or drop --use_parallelism_config.');
  }
  // The plugin sections (resolved with the core settings): every value checked against its row (type, allowed values).
  const sections = config.sections;
  for (const p of configProblems) {
    if (LAUNCHER_CHECKED.has(p.issue.key)) continue;
    const text = p.source === 'launch flags' ? p.issue.message : `${p.source}: ${p.issue.message}`;
    if (!problems.includes(text)) problems.push(text);
  }
  const distributedType: ResolvedLaunch['distributedType'] = dt.source === 'default' ? undefined : { value: dt.value, origin: originOf(dt) };
  if (paradigm === 'fsdp' && values.fsdp_cpu_ram_efficient_loading === true && values.fsdp_sync_module_states === false) {
    problems.push(
      'FSDP with --fsdp_cpu_ram_efficient_loading true needs --fsdp_sync_module_states true (the other ranks start empty and receive rank 0\'s weights). Set --fsdp_sync_module_states true or --fsdp_cpu_ram_efficient_loading false.',
    );
  }
  // (Not when the flag checks above already refused --num_processes below 2 or --multi_gpu itself.)
  if (paradigm === 'multi_gpu' && numProcesses < 2 && numMachines === 1 && origins.multi_gpu?.source === 'launch flag' && flagProcs === undefined && chosen.length <= 1) {
    problems.push(`--multi_gpu needs at least 2 processes, but ${describe('num_processes')} is ${numProcesses}. Pass --num_processes 2 (or more).`);
  }
  if (problems.length > 0) report();

  return Object.freeze({
    script: args.script,
    scriptArgs: [...(args.scriptArgs ?? [])],
    module: asBool(values.module),
    noPython: asBool(values.no_python),
    quiet: asBool(values.quiet),
    debug: asBool(values.debug),
    cpu: asBool(values.cpu),
    mixedPrecision: values.mixed_precision as MixedPrecision,
    numProcesses,
    numMachines,
    machineRank,
    localProcesses: numProcesses / numMachines,
    mainProcessIp: ip,
    mainProcessPort: port,
    numCpuThreadsPerProcess: threads,
    gradientAccumulationSteps: ga,
    processGroupTimeout,
    paradigm,
    useParallelismConfig,
    tee,
    logDir,
    role: String(values.role),
    values: Object.freeze(values),
    origins: Object.freeze(origins),
    configFile: file,
    warnings: Object.freeze(warnings),
    sections,
    distributedType,
    config,
  });
}

function toLaunchValue(v: unknown): LaunchValue | undefined {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map(String);
  return undefined;
}

/** Streams to copy into log files: 0 none, 1 stdout, 2 stderr, 3 both. */
export type TeeStreams = 0 | 1 | 2 | 3;

/**
 * Parses `--tee`: one digit for every rank (`3`) or per local rank
 * (`0:3,1:1`, other ranks none). Throws a {@link LaunchError} naming the text.
 */
export function parseTee(text: string): (localRank: number) => TeeStreams {
  const t = text.trim();
  const bad = () =>
    new LaunchError(`--tee ${JSON.stringify(text)} is not valid: pass 0 (none), 1 (stdout), 2 (stderr) or 3 (both), or per rank like 0:3,1:1.`);
  if (/^[0-3]$/.test(t)) {
    const v = Number(t) as TeeStreams;
    return () => v;
  }
  const map = new Map<number, TeeStreams>();
  for (const part of t.split(',')) {
    const m = /^\s*(\d+)\s*:\s*([0-3])\s*$/.exec(part);
    if (!m) throw bad();
    map.set(Number(m[1]), Number(m[2]) as TeeStreams);
  }
  return (r) => map.get(r) ?? 0;
}
