/**
 * One resolved configuration, where every setting knows where it came from.
 *
 * Accelerate's settings can come from five places and users often cannot
 * tell which one won (Accelerate issues #300, #1018; see the spec's §13.4).
 * {@link resolveConfig} merges them with one fixed precedence and records the
 * winner for each setting; {@link formatProvenance} prints the result.
 * @module
 */
import { PROCESS_GROUP_TIMEOUT_ENV, parseTimeoutSeconds } from './timeout.js';
import { detectWorld, type EnvironmentVariables } from '../state/environment.js';
import type { MixedPrecision } from '../interfaces/backend.js';
import { ConfigError, showValue, suggestClosest, type ConfigIssue } from './errors.js';
import {
  checkAccelerateEnvNames,
  CONFIG_EXPORTED_ENV_VAR,
  CONFIG_FILE_ENV_VAR,
  DISTRIBUTED_TYPE_ENV_VAR,
  parseBoolEnv,
  PROVENANCE_ENV_VAR,
} from './env.js';
import { strToBoolOrUndefined } from './bool.js';
import {
  resolveSections,
  SETTING_SECTIONS,
  sectionValues,
  type ResolvedSection,
  type ResolvedSections,
  type SectionInputs,
  type SectionLayers,
  type SectionSetting,
  type SectionValues,
  type SettingSectionName,
} from './settings.js';
import { findDefaultConfigFile, loadConfigFile, type LoadedConfigFile } from './file.js';
import {
  DISTRIBUTED_TYPES,
  DYNAMO_BACKENDS,
  MIXED_PRECISIONS,
  type ClusterConfigFile,
  type ConfigDistributedType,
} from './schema.js';

/**
 * Where a setting's value came from. `plugin default` is a default a plugin's
 * `config` hook contributes for its section (beaten by every other source
 * but the table's own default).
 */
export type ConfigSource = 'default' | 'plugin default' | 'config file' | 'env' | 'constructor' | 'launch flag';

/** Every {@link ConfigSource}, highest precedence first. */
export const CONFIG_SOURCES: readonly ConfigSource[] = ['constructor', 'launch flag', 'env', 'config file', 'plugin default', 'default'];

/** A torch dynamo backend name, upper case (`NO` = off). */
export type DynamoBackendName = (typeof DYNAMO_BACKENDS)[number];

/** A setting's value and its origin. */
export interface ResolvedSetting<T> {
  readonly value: T;
  readonly source: ConfigSource;
  /**
   * Which variable, file or argument: e.g. `ACCELERATE_MIXED_PRECISION`,
   * `/home/u/.cache/huggingface/accelerate/default_config.yaml (mixed_precision)`,
   * `mixedPrecision`; empty for plain defaults.
   */
  readonly detail: string;
}

/** The plain values of the resolved settings (`undefined` = not set). */
export type ResolvedValues = {
  /** `no | fp16 | bf16 | fp8`. */
  mixedPrecision: MixedPrecision;
  /** Micro-batches per optimizer step (>= 1). */
  gradientAccumulationSteps: number;
  /** Force CPU even when an accelerator exists. */
  cpu: boolean;
  /** Cross-rank shape checks on collectives. */
  debug: boolean;
  /** Total processes (world size). */
  numProcesses: number;
  /** Machines taking part. */
  numMachines: number;
  /** Rank of this machine. */
  machineRank: number;
  /** Address of the rank-0 machine (`undefined` = this machine). */
  mainProcessIp: string | undefined;
  /** Port of the rank-0 process. */
  mainProcessPort: number;
  /**
   * Seconds a collective or the rendezvous may wait (`--timeout`, ACCELERATE_PROCESS_GROUP_TIMEOUT);
   * `undefined` = InitProcessGroupKwargs' default (1800 s, 600 s for nccl). InitProcessGroupKwargs in code wins.
   */
  processGroupTimeout: number | undefined;
  /** Distributed type from configuration (the state refines it from the launcher's variables). */
  distributedType: ConfigDistributedType;
  /** torch.compile-style backend, upper case (`NO` = off). */
  dynamoBackend: DynamoBackendName;
  /** DeepSpeed requested. */
  useDeepspeed: boolean;
  /** FSDP requested. */
  useFsdp: boolean;
  /** Megatron-LM requested. */
  useMegatronLm: boolean;
  /** Batches are split across processes rather than drawn per process. */
  splitBatches: boolean;
  /** Rank 0 reads and dispatches batches (`undefined` = decided per loader). */
  dispatchBatches: boolean | undefined;
  /** Pad the last batches so every process gets the same number. */
  evenBatches: boolean;
  /** Project folder (checkpoints, logs). */
  projectDir: string | undefined;
  /** Logging folder (defaults to projectDir). */
  loggingDir: string | undefined;
  /** Seed, when set. */
  seed: number | undefined;
};

/** Names of the settings, in report order. */
export const SETTING_NAMES: readonly (keyof ResolvedValues)[] = [
  'mixedPrecision',
  'gradientAccumulationSteps',
  'cpu',
  'debug',
  'distributedType',
  'numProcesses',
  'numMachines',
  'machineRank',
  'mainProcessIp',
  'mainProcessPort',
  'processGroupTimeout',
  'dynamoBackend',
  'useDeepspeed',
  'useFsdp',
  'useMegatronLm',
  'splitBatches',
  'dispatchBatches',
  'evenBatches',
  'projectDir',
  'loggingDir',
  'seed',
];

/** Each setting with its value and origin. */
export type ResolvedSettings = { readonly [K in keyof ResolvedValues]: ResolvedSetting<ResolvedValues[K]> };

/**
 * The resolved configuration: every setting with provenance
 * (`resolved.mixedPrecision` is `{ value, source, detail }`), plus what was
 * noticed on the way. Frozen.
 */
export interface ResolvedConfig extends ResolvedSettings {
  /** Things the user should know: env/constructor disagreements, misspelt variables, legacy keys. */
  readonly warnings: readonly string[];
  /** The config file that took part, if any. */
  readonly configFile: LoadedConfigFile | null;
  /** The value of one setting. */
  value<K extends keyof ResolvedValues>(name: K): ResolvedValues[K];
  /** All values, without provenance (for plugins and trackers). */
  values(): ResolvedValues;
  /** {@link formatProvenance} of this configuration. */
  report(): string;
  /**
   * Every plugin section (fsdp, deepspeed, megatron, parallelism, dynamo,
   * fp8), each value with its origin; see {@link ResolvedConfig.section}.
   */
  readonly sections: ResolvedSections;
  /**
   * One plugin section, typed, with camelCase keys and each value's origin:
   * `resolved.section('fsdp').shardingStrategy` is
   * `{ value: 'FULL_SHARD', source: 'config file', detail: '/x.yaml (fsdp_config.fsdp_sharding_strategy)' }`.
   * A name outside the table (a plugin's own section) gives `{}`.
   */
  section<S extends SettingSectionName>(name: S): ResolvedSection<S>;
  /** One plugin section's plain values (`resolved.sectionValues('fsdp').offloadParams`). */
  sectionValues<S extends SettingSectionName>(name: S): SectionValues<S>;
  /**
   * A new resolved configuration where `defaults` (a plugin's `config` hook)
   * fill the section values nothing else set: config file, env, launch flags
   * and constructor values still win. Their source is `plugin default`, with
   * `pluginName` in the detail. Throws a {@link ConfigError} for a value its
   * row does not accept.
   */
  withPluginDefaults(defaults: SectionInputs, pluginName?: string): ResolvedConfig;
  /** {@link formatSections} of this configuration. */
  sectionsReport(sections?: readonly SettingSectionName[]): string;
}


/** Inputs of {@link resolveConfig}. */
export interface ResolveConfigOptions {
  /** Values the user passed to the `Accelerator` (undefined = not passed). */
  constructorArgs?: Partial<ResolvedValues>;
  /**
   * Values given as `accelerate launch` flags, when resolving inside the launcher.
   * A flag that chooses the distributed type (`distributedType`, or a `use*`
   * set to true) sets it alone: the file's `distributed_type` then takes no
   * part (Python's launcher ignores it too).
   */
  launchFlags?: Partial<ResolvedValues>;
  /**
   * The flag that gave a {@link launchFlags} value, for its detail, when it is
   * not the setting's snake_case name (`{ distributedType: 'multi_gpu' }`);
   * `processGroupTimeout` is `--timeout` already.
   */
  launchFlagNames?: Partial<Record<keyof ResolvedValues, string>>;
  /** Environment (default `process.env`). */
  env?: EnvironmentVariables;
  /**
   * The config file: a path or an already loaded file; `false` or `null` for
   * none. When undefined: the file named by {@link CONFIG_FILE_ENV_VAR}
   * (`accelerate launch --config_file` sets it for its children), else the
   * default file (`$HF_HOME/accelerate/default_config.yaml`, found through
   * `env`) when it exists. (Python reads the file only inside
   * `accelerate launch`; reading it here too lets a script run directly
   * report, and use, what the user configured.)
   */
  configFile?: string | LoadedConfigFile | false | null;
  /** Further `ACCELERATE_*` names to treat as known (no typo warning). */
  extraKnownEnvVars?: Iterable<string>;
  /** Plugin-section values given in code (source `constructor`), e.g. `{ fsdp: { offloadParams: true } }`. */
  sections?: SectionInputs;
  /** Plugin-section values given as `accelerate launch` flags, by flag name (`{ fsdp_offload_params: true }`). */
  sectionFlags?: Readonly<Record<string, unknown>>;
  /**
   * Defaults plugins contribute for their sections (their `config` hook):
   * below config file, env, launch flags and constructor; above the table's
   * defaults. See also {@link ResolvedConfig.withPluginDefaults}.
   */
  pluginDefaults?: SectionInputs;
  /** Who gave {@link pluginDefaults}, for the details (`FsdpPlugin`). */
  pluginName?: string;
}

interface Candidate<T> {
  value: T;
  source: ConfigSource;
  detail: string;
  /** For env candidates: the variable and its raw text. */
  envVar?: string;
  raw?: string;
}

/** Settings a launcher passes to its children with their sources (see {@link encodeProvenanceEnv}). */
export type ProvenanceMap = Record<string, { value: string; source: ConfigSource; detail: string }>;

/**
 * Encodes what a launcher exports, for {@link PROVENANCE_ENV_VAR}: the child's
 * {@link resolveConfig} then reports the launcher's sources (config file,
 * launch flag) instead of plain `env`.
 */
export function encodeProvenanceEnv(entries: ProvenanceMap): string {
  return JSON.stringify(entries);
}

function readProvenance(env: EnvironmentVariables, warnings: string[]): ProvenanceMap {
  const raw = env[PROVENANCE_ENV_VAR];
  if (!raw) return {};
  try {
    const parsed = JSON.parse(raw) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    const out: ProvenanceMap = {};
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
      const e = v as { value?: unknown; source?: unknown; detail?: unknown };
      if (
        typeof e === 'object' &&
        e !== null &&
        typeof e.value === 'string' &&
        typeof e.source === 'string' &&
        (CONFIG_SOURCES as readonly string[]).includes(e.source)
      ) {
        out[k] = { value: e.value, source: e.source as ConfigSource, detail: typeof e.detail === 'string' ? e.detail : '' };
      }
    }
    return out;
  } catch {
    warnings.push(`${PROVENANCE_ENV_VAR} is not valid JSON and is ignored`);
    return {};
  }
}

// ---- value checks -------------------------------------------------------------

type Check<T> = (value: unknown, key: string) => T | ConfigIssue;

const badValue = (key: string, value: unknown, expected: string, candidates?: readonly string[]): ConfigIssue => {
  const suggestion = typeof value === 'string' && candidates ? suggestClosest(value, candidates) : undefined;
  return {
    kind: 'invalid-value',
    key,
    value,
    expected,
    suggestion,
    message: `${key} has value ${showValue(value)}, expected ${expected}${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`,
  };
};

const isIssue = (v: unknown): v is ConfigIssue =>
  typeof v === 'object' && v !== null && 'kind' in v && 'message' in v && 'key' in v;

const checkPrecision: Check<MixedPrecision> = (v, key) => {
  const s = typeof v === 'string' ? v.toLowerCase() : v;
  return (MIXED_PRECISIONS as readonly unknown[]).includes(s)
    ? (s as MixedPrecision)
    : badValue(key, v, `one of: ${MIXED_PRECISIONS.join(', ')}`, MIXED_PRECISIONS);
};
const checkDynamo: Check<DynamoBackendName> = (v, key) => {
  const s = typeof v === 'string' ? v.toUpperCase() : v;
  return (DYNAMO_BACKENDS as readonly unknown[]).includes(s)
    ? (s as DynamoBackendName)
    : badValue(key, v, `one of: ${DYNAMO_BACKENDS.join(', ')} (any case)`, DYNAMO_BACKENDS);
};
const checkDistributed: Check<ConfigDistributedType> = (v, key) =>
  (DISTRIBUTED_TYPES as readonly unknown[]).includes(v)
    ? (v as ConfigDistributedType)
    : badValue(key, v, `one of: ${DISTRIBUTED_TYPES.join(', ')}`, DISTRIBUTED_TYPES);
const intAtLeast =
  (min: number): Check<number> =>
  (v, key) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min ? v : badValue(key, v, `an integer >= ${min}`);
const checkPort: Check<number> = (v, key) =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535 ? v : badValue(key, v, 'a port number (0-65535)');
const checkBool: Check<boolean> = (v, key) => (typeof v === 'boolean' ? v : badValue(key, v, 'true or false'));
const checkOptBool: Check<boolean | undefined> = (v, key) =>
  typeof v === 'boolean' ? v : badValue(key, v, 'true or false');
const checkOptString: Check<string | undefined> = (v, key) =>
  typeof v === 'string' ? v : badValue(key, v, 'a string');
const checkSeed: Check<number | undefined> = (v, key) =>
  typeof v === 'number' && Number.isInteger(v) ? v : badValue(key, v, 'an integer');

// EnvironmentVariables strings -> values (errors name the variable).
const envInt = (min: number) => (name: string, raw: string): number | ConfigIssue => {
  const t = raw.trim();
  const n = /^[+-]?\d+$/.test(t) ? Number(t) : NaN;
  return Number.isInteger(n) && n >= min ? n : badValue(name, raw, `an integer >= ${min}`);
};
const envBool = (name: string, raw: string): boolean | ConfigIssue => {
  try {
    return parseBoolEnv(name, raw);
  } catch (e) {
    return (e as ConfigError).issues[0];
  }
};

/**
 * A core setting's row: how it is checked, the variables it reads, its
 * config-file key and default. World settings (`world: true`) read the
 * launcher's variables through {@link detectWorld}, the one place that knows
 * torchrun, MPI and SLURM.
 */
interface SettingDef<T> {
  check: Check<T>;
  world?: boolean;
  env?: readonly string[];
  parseEnv?: (name: string, raw: string) => T | ConfigIssue;
  fromFile?: (cfg: ClusterConfigFile, file: LoadedConfigFile) => { value: unknown; key: string } | undefined;
  defaultValue: T;
  defaultDetail?: string;
}

function fileKey<K extends keyof ClusterConfigFile>(key: K, skip?: (v: ClusterConfigFile[K]) => boolean) {
  return (cfg: ClusterConfigFile, file: LoadedConfigFile) => {
    if (!file.present.has(key)) return undefined;
    const value = cfg[key];
    if (value === null || value === undefined || skip?.(value)) return undefined;
    return { value, key: key as string };
  };
}

const DEFS: { [K in keyof ResolvedValues]: SettingDef<ResolvedValues[K]> } = {
  mixedPrecision: {
    check: checkPrecision,
    env: ['ACCELERATE_MIXED_PRECISION'],
    parseEnv: (n, r) => checkPrecision(r, n),
    fromFile: fileKey('mixed_precision'),
    defaultValue: 'no',
  },
  gradientAccumulationSteps: {
    check: intAtLeast(1),
    env: ['ACCELERATE_GRADIENT_ACCUMULATION_STEPS'],
    parseEnv: envInt(1),
    // `accelerate launch` exports it only for DeepSpeed, from the DeepSpeed section.
    fromFile: (cfg) => deepspeedSteps(cfg, cfg.distributed_type === 'DEEPSPEED'),
    defaultValue: 1,
  },
  cpu: { check: checkBool, env: ['ACCELERATE_USE_CPU'], parseEnv: envBool, fromFile: fileKey('use_cpu'), defaultValue: false },
  debug: { check: checkBool, env: ['ACCELERATE_DEBUG_MODE'], parseEnv: envBool, fromFile: fileKey('debug'), defaultValue: false },
  distributedType: {
    check: checkDistributed,
    // Exported by `accelerate launch`, so that its ranks need not read the config file.
    env: [DISTRIBUTED_TYPE_ENV_VAR],
    parseEnv: (n, r) => checkDistributed(r.trim().toUpperCase(), n),
    fromFile: fileKey('distributed_type'),
    defaultValue: 'NO',
  },
  numProcesses: { check: intAtLeast(1), world: true, fromFile: fileKey('num_processes', (v) => v === -1), defaultValue: 1 },
  numMachines: { check: intAtLeast(1), world: true, fromFile: fileKey('num_machines'), defaultValue: 1 },
  machineRank: { check: intAtLeast(0), world: true, fromFile: fileKey('machine_rank'), defaultValue: 0 },
  mainProcessIp: {
    check: checkOptString,
    world: true,
    fromFile: fileKey('main_process_ip'),
    defaultValue: undefined,
    defaultDetail: 'this machine (127.0.0.1)',
  },
  mainProcessPort: { check: checkPort, world: true, fromFile: fileKey('main_process_port'), defaultValue: 29500 },
  processGroupTimeout: {
    check: (v, key) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : badValue(key, v, 'a positive number of seconds')),
    env: [PROCESS_GROUP_TIMEOUT_ENV],
    parseEnv: (n, r) => parseTimeoutSeconds(r) ?? badValue(n, r, 'a positive number of seconds (e.g. 600)'),
    defaultValue: undefined,
    defaultDetail: '1800 s (600 s for nccl), as InitProcessGroupKwargs',
  },
  dynamoBackend: {
    check: checkDynamo,
    env: ['ACCELERATE_DYNAMO_BACKEND'],
    parseEnv: (n, r) => checkDynamo(r, n),
    fromFile: (cfg) => {
      const v = cfg.dynamo_config?.dynamo_backend;
      return v === undefined || v === null ? undefined : { value: v, key: 'dynamo_config.dynamo_backend' };
    },
    defaultValue: 'NO',
  },
  useDeepspeed: {
    check: checkBool,
    env: ['ACCELERATE_USE_DEEPSPEED'],
    parseEnv: envBool,
    fromFile: fileKey('distributed_type', (v) => v !== 'DEEPSPEED'),
    defaultValue: false,
  },
  useFsdp: {
    check: checkBool,
    env: ['ACCELERATE_USE_FSDP'],
    parseEnv: envBool,
    fromFile: fileKey('distributed_type', (v) => v !== 'FSDP'),
    defaultValue: false,
  },
  useMegatronLm: {
    check: checkBool,
    env: ['ACCELERATE_USE_MEGATRON_LM'],
    parseEnv: envBool,
    fromFile: fileKey('distributed_type', (v) => v !== 'MEGATRON_LM'),
    defaultValue: false,
  },
  splitBatches: { check: checkBool, defaultValue: false },
  dispatchBatches: { check: checkOptBool, defaultValue: undefined, defaultDetail: 'decided per data loader' },
  evenBatches: { check: checkBool, defaultValue: true },
  projectDir: { check: checkOptString, defaultValue: undefined },
  loggingDir: { check: checkOptString, defaultValue: undefined },
  seed: { check: checkSeed, defaultValue: undefined },
};

const USE_FLAG_TYPES = [
  ['useDeepspeed', 'DEEPSPEED'],
  ['useFsdp', 'FSDP'],
  ['useMegatronLm', 'MEGATRON_LM'],
] as const;

/** Rows the file's `distributed_type` sets (see {@link ResolveConfigOptions.launchFlags}). */
const TYPE_ROWS = new Set<keyof ResolvedValues>(['distributedType', 'useDeepspeed', 'useFsdp', 'useMegatronLm']);

/** A launch flag's name when it is not the setting's snake_case name. */
const LAUNCH_FLAG_NAMES: Partial<Record<keyof ResolvedValues, string>> = { processGroupTimeout: 'timeout' };

/** DeepSpeed's gradient accumulation steps in the file, taken only when the distributed type is DeepSpeed. */
function deepspeedSteps(cfg: ClusterConfigFile, isDeepspeed: boolean): { value: unknown; key: string } | undefined {
  const v = cfg.deepspeed_config?.gradient_accumulation_steps;
  return isDeepspeed && v !== undefined && v !== null ? { value: v, key: 'deepspeed_config.gradient_accumulation_steps' } : undefined;
}

/**
 * Merges the configuration sources into one {@link ResolvedConfig}, recording
 * for every setting which source won.
 *
 * **Precedence** (highest first): `constructor` (what the script passed to the
 * `Accelerator`) > `launch flag` (flags of `accelerate launch`, when resolving
 * inside the launcher) > `env` (`ACCELERATE_*` and launcher variables) >
 * `config file` > `default`.
 *
 * This deliberately differs from Python Accelerate in one place: Python lets
 * `ACCELERATE_GRADIENT_ACCUMULATION_STEPS` override the constructor's
 * `gradient_accumulation_steps`. Here code wins, and whenever an environment
 * variable disagrees with an explicit constructor argument or launch flag, a
 * warning names both values. Malformed environment values (e.g.
 * `ACCELERATE_USE_CPU=maybe`) throw a {@link ConfigError} naming the variable,
 * even when a higher source wins, because they are mistakes either way.
 *
 * The config file is `configFile` when given (`false`: none), else the file
 * `ACCELERATE_CONFIG_FILE` names, else the default file under `HF_HOME` —
 * except in a rank `accelerate launch` started without a file, which reads
 * none. The launcher also turns the file into environment variables for its
 * ranks ({@link PROVENANCE_ENV_VAR} keeps the original source visible).
 *
 * `distributedType` is derived too: an explicit `distributedType`, else a
 * `use*` flag set by a constructor/launch flag/env (DeepSpeed before FSDP
 * before Megatron-LM, as Accelerate checks them), else the file, else `NO`.
 */
export function resolveConfig(options: ResolveConfigOptions = {}): ResolvedConfig {
  const m = mergeConfig(options, false);
  throwIssues(m.issues);
  return buildResolved(m.out, m.sections, m.layers, m.warnings, m.file);
}

/** What the launcher's problems name a core-setting issue by (see {@link resolveLaunchConfig}). */
export interface ConfigProblem {
  /** `launch flags`, `config file /x.yaml`, `the environment`, … */
  readonly source: string;
  readonly issue: ConfigIssue;
}

/**
 * The launcher's side of {@link resolveConfig}: the same rows and the same
 * merge (launch flags > env > config file > default), for `accelerate launch`,
 * which validates before spawning and reports every problem at once in its
 * own words. Differences: problems are returned instead of thrown; a launch
 * flag's or the file's value that fails its row's check is still kept (and
 * reported in `problems`), so the launcher can name it with its own message;
 * the plugin sections fall back to the launcher's defaults (Python's argparse
 * ones). Pass `env` with only the variables the launcher reads (Python's
 * launcher reads none but the timeout). The config file must be given
 * (`configFile`: a loaded file or `null`). @internal
 */
export function resolveLaunchConfig(
  options: ResolveConfigOptions & { configFile: LoadedConfigFile | null },
): { config: ResolvedConfig; problems: ConfigProblem[] } {
  const m = mergeConfig(options, true);
  return { config: buildResolved(m.out, m.sections, m.layers, m.warnings, m.file), problems: m.issues };
}

interface Merged {
  out: Record<string, ResolvedSetting<unknown>>;
  sections: ResolvedSections;
  layers: SectionLayers;
  warnings: string[];
  file: LoadedConfigFile | null;
  issues: ConfigProblem[];
}

/** The one merge of the core rows ({@link DEFS}) and the plugin sections. `launcher`: see {@link resolveLaunchConfig}. */
function mergeConfig(options: ResolveConfigOptions, launcher: boolean): Merged {
  const env = options.env ?? process.env;
  const ctor = options.constructorArgs ?? {};
  const flags = options.launchFlags ?? {};
  const warnings: string[] = [];
  const issues: ConfigProblem[] = [];

  let file: LoadedConfigFile | null = null;
  // `accelerate launch` names its file and provenance to the ranks: it showed the file's warnings already.
  let fileWarningsShown = false;
  // A rank of `accelerate launch`: the launcher resolved everything and exported it; no file is read again.
  const exportedByLauncher = strToBoolOrUndefined(env[CONFIG_EXPORTED_ENV_VAR] ?? '') === true;
  if (typeof options.configFile === 'string') file = loadConfigFile(options.configFile);
  else if (options.configFile) file = options.configFile;
  else if (options.configFile === undefined && !exportedByLauncher) {
    const named = env[CONFIG_FILE_ENV_VAR];
    if (named) {
      file = loadConfigFile(named);
      fileWarningsShown = env[PROVENANCE_ENV_VAR] !== undefined;
    } else if (env[PROVENANCE_ENV_VAR] === undefined) {
      const found = findDefaultConfigFile(env);
      if (found) file = loadConfigFile(found);
    }
    // Else `accelerate launch` started this rank and chose to use no file (e.g. `--cpu`,
    // which skips the default file as Python's does): the rank follows that choice.
  }
  if (file && !fileWarningsShown) warnings.push(...file.warnings.map((w) => `${file!.path}: ${w}`));
  const cluster =
    file && file.config.compute_environment === 'LOCAL_MACHINE' ? (file.config as ClusterConfigFile) : null;

  warnings.push(...checkAccelerateEnvNames(env, options.extraKnownEnvVars));
  const provenance = readProvenance(env, warnings);
  const world = worldFromEnv(env, issues);

  const out: Record<string, ResolvedSetting<unknown>> = {};

  const explicit = <K extends keyof ResolvedValues>(
    name: K,
    values: Partial<ResolvedValues>,
    source: 'constructor' | 'launch flag',
  ): Candidate<ResolvedValues[K]> | undefined => {
    // null counts as "not passed" too (plain-JS callers).
    if (values[name] === undefined || values[name] === null) return undefined;
    const detail = source === 'constructor' ? name : `--${options.launchFlagNames?.[name] ?? LAUNCH_FLAG_NAMES[name] ?? snake(name)}`;
    const checked = DEFS[name].check(values[name], name);
    if (isIssue(checked)) {
      issues.push({ source: source === 'constructor' ? 'constructor arguments' : 'launch flags', issue: checked });
      // The launcher names a bad flag itself (its own message, with the fix); the value stays for its checks.
      return launcher && source === 'launch flag' ? { value: values[name] as ResolvedValues[K], source, detail } : undefined;
    }
    return { value: checked, source, detail };
  };

  const fromEnv = <K extends keyof ResolvedValues>(name: K): Candidate<ResolvedValues[K]> | undefined => {
    const def = DEFS[name];
    if (def.world) {
      const w = world[name as WorldSettingName];
      if (!w) return undefined;
      const checked = def.check(w.value, w.variable);
      if (isIssue(checked)) {
        issues.push({ source: 'the environment', issue: checked });
        return undefined;
      }
      const via = w.raw === undefined ? undefined : provenance[w.variable];
      if (via && via.value === w.raw) {
        const detail = via.detail ? `${via.detail} (via ${w.variable})` : w.variable;
        return { value: checked, source: via.source, detail, envVar: w.variable, raw: w.raw };
      }
      return { value: checked, source: 'env', detail: w.variable, envVar: w.variable, raw: w.raw ?? String(w.value) };
    }
    for (const variable of def.env ?? []) {
      const raw = env[variable];
      if (raw === undefined || raw === '') continue;
      const parsed = def.parseEnv!(variable, raw);
      if (isIssue(parsed)) {
        issues.push({ source: 'the environment', issue: { ...parsed, message: `${variable}=${showValue(raw)} is not ${parsed.expected}` } });
        return undefined;
      }
      const via = provenance[variable];
      if (via && via.value === raw) {
        const detail = via.detail ? `${via.detail} (via ${variable})` : variable;
        return { value: parsed, source: via.source, detail, envVar: variable, raw };
      }
      return { value: parsed, source: 'env', detail: variable, envVar: variable, raw };
    }
    return undefined;
  };

  // A launch flag that chooses the distributed type sets it alone (the file's distributed_type takes no part).
  const flaggedType: ConfigDistributedType | undefined =
    flags.distributedType ?? USE_FLAG_TYPES.find(([flag]) => flags[flag] === true)?.[1];
  const flagsChoseType = flaggedType !== undefined;

  const fromFile = <K extends keyof ResolvedValues>(name: K): Candidate<ResolvedValues[K]> | undefined => {
    const def = DEFS[name];
    if (!cluster || !file || !def.fromFile) return undefined;
    if (flagsChoseType && TYPE_ROWS.has(name)) return undefined;
    const got =
      name === 'gradientAccumulationSteps' && flagsChoseType
        ? deepspeedSteps(cluster, flaggedType === 'DEEPSPEED')
        : def.fromFile(cluster, file);
    if (!got) return undefined;
    let value: unknown = got.value;
    if (name === 'useDeepspeed' || name === 'useFsdp' || name === 'useMegatronLm') value = true;
    const detail =
      name.startsWith('use') ? `${file.path} (distributed_type: ${String(got.value)})` : `${file.path} (${got.key})`;
    const checked = def.check(value, `${got.key}`);
    if (isIssue(checked)) {
      issues.push({ source: `config file ${file.path}`, issue: checked });
      return launcher ? { value: value as ResolvedValues[K], source: 'config file', detail } : undefined;
    }
    return { value: checked, source: 'config file', detail };
  };

  const resolveOne = <K extends keyof ResolvedValues>(name: K): void => {
    const c = explicit(name, ctor, 'constructor');
    const f = explicit(name, flags, 'launch flag');
    const e = fromEnv(name);
    const winner = c ?? f ?? e ?? fromFile(name);
    const higher = c ?? f;
    if (higher && e && higher.value !== e.value) {
      const who = higher.source === 'constructor' ? `the constructor's ${name}` : `the launch flag ${higher.detail}`;
      let message =
        `${e.envVar}=${e.raw} disagrees with ${who}=${formatValue(higher.value)}; ` +
        `using ${formatValue(higher.value)} (${higher.source} beats env)`;
      if (name === 'gradientAccumulationSteps' && higher.source === 'constructor') {
        message += '. Python Accelerate would use the env value here';
      }
      warnings.push(message);
    }
    const def = DEFS[name];
    out[name] = winner
      ? { value: winner.value, source: winner.source, detail: winner.detail }
      : { value: def.defaultValue, source: 'default', detail: def.defaultDetail ?? '' };
  };

  for (const name of SETTING_NAMES) {
    if (name === 'distributedType' || name === 'loggingDir') continue;
    resolveOne(name);
  }

  // loggingDir falls back to projectDir (ProjectConfiguration's rule).
  resolveOne('loggingDir');
  if (out.loggingDir.source === 'default' && out.projectDir.value !== undefined) {
    out.loggingDir = { value: out.projectDir.value, source: 'default', detail: 'same as projectDir' };
  }

  // distributedType: explicit value, else an explicit use* flag, else env use* flags, else file.
  const dt = (): ResolvedSetting<ConfigDistributedType> => {
    const byTier = (source: ConfigSource) => {
      for (const [flag, type] of USE_FLAG_TYPES) {
        const s = out[flag] as ResolvedSetting<boolean>;
        if (s.source === source && s.value) return { value: type as ConfigDistributedType, source, detail: s.detail };
      }
      return undefined;
    };
    const c = explicit('distributedType', ctor, 'constructor');
    if (c) return c;
    const cu = byTier('constructor');
    if (cu) return cu;
    const f = explicit('distributedType', flags, 'launch flag');
    if (f) return f;
    const fu = byTier('launch flag');
    if (fu) return fu;
    // The type `accelerate launch` resolved (its ranks read no config file), then env use* flags.
    const ed = fromEnv('distributedType');
    if (ed) return { value: ed.value, source: ed.source, detail: ed.detail };
    const eu = byTier('env');
    if (eu) return eu;
    // EnvironmentVariables with a launcher provenance may carry a config-file source.
    const ec = byTier('config file');
    const fileDt = fromFile('distributedType');
    if (fileDt) return fileDt;
    if (ec) return ec;
    return { value: 'NO', source: 'default', detail: '' };
  };
  out.distributedType = dt();

  // The plugin sections, from the same layers (one resolver for the launcher and the ranks).
  const layers: SectionLayers = {
    code: options.sections,
    launchFlags: options.sectionFlags,
    env: { ...env },
    exported: provenance,
    file: cluster && file ? { path: file.path, config: cluster as unknown as Record<string, unknown> } : null,
    pluginDefaults: options.pluginDefaults,
    pluginName: options.pluginName,
    launcherDefaults: launcher || undefined,
  };
  const { sections, problems } = resolveSections(layers);
  // A variable both a core row and a section read (ACCELERATE_DYNAMO_BACKEND) is reported once.
  const reported = new Set(issues.map((i) => i.issue.key));
  issues.push(...problems.filter((p) => !reported.has(p.issue.key)));

  return { out, sections, layers, warnings, file, issues };
}

function throwIssues(issues: readonly ConfigProblem[]): void {
  if (issues.length > 0) {
    const sources = [...new Set(issues.map((i) => i.source))];
    throw new ConfigError(sources.join(' and '), issues.map((i) => i.issue));
  }
}

function mergeInputs(a: SectionInputs | undefined, b: SectionInputs): SectionInputs {
  const out: Record<string, unknown> = { ...a };
  for (const s of SETTING_SECTIONS) {
    if (b[s]) out[s] = { ...(a?.[s] ?? {}), ...b[s] };
  }
  return out as SectionInputs;
}

function buildResolved(
  out: Record<string, ResolvedSetting<unknown>>,
  sections: ResolvedSections,
  layers: SectionLayers,
  warnings: readonly string[],
  file: LoadedConfigFile | null,
): ResolvedConfig {
  const ordered: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) ordered[name] = Object.freeze(out[name]);
  const resolved = ordered as unknown as ResolvedConfig;
  Object.defineProperties(ordered, {
    warnings: { value: Object.freeze([...warnings]), enumerable: true },
    configFile: { value: file, enumerable: true },
    value: { value: <K extends keyof ResolvedValues>(name: K) => resolved[name].value },
    values: { value: () => resolvedValues(resolved) },
    report: { value: () => formatProvenance(resolved) },
    sections: { value: sections },
    section: { value: <S extends SettingSectionName>(name: S) => sectionOf(sections, name) },
    sectionValues: { value: <S extends SettingSectionName>(name: S) => sectionValues(sectionOf(sections, name)) },
    withPluginDefaults: {
      value: (defaults: SectionInputs, pluginName?: string): ResolvedConfig => {
        const next: SectionLayers = {
          ...layers,
          pluginDefaults: mergeInputs(layers.pluginDefaults, defaults),
          pluginName: pluginName ?? layers.pluginName,
        };
        const { sections: again, problems } = resolveSections(next);
        throwIssues(problems);
        return buildResolved(out, again, next, warnings, file);
      },
    },
    sectionsReport: { value: (names?: readonly SettingSectionName[]) => formatSections(resolved, names) },
  });
  return Object.freeze(resolved);
}

const NO_SECTION = Object.freeze({});

/** A section by name; a name outside the table (a user plugin's own section) has no settings: `{}`. */
function sectionOf<S extends SettingSectionName>(sections: ResolvedSections, name: S): ResolvedSection<S> {
  return (Object.hasOwn(sections, name) ? sections[name] : NO_SECTION) as ResolvedSection<S>;
}

type WorldSettingName = 'numProcesses' | 'numMachines' | 'machineRank' | 'mainProcessIp' | 'mainProcessPort';
interface WorldValue {
  value: number | string;
  /** The variable read (for details and the launcher's provenance), or a note for derived values. */
  variable: string;
  /** Its text, when one variable gave the value. */
  raw: string | undefined;
}

const WORLD_SIZE_VARS = ['WORLD_SIZE', 'OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'MV2_COMM_WORLD_SIZE', 'SLURM_NTASKS'];
const LOCAL_SIZE_VARS = ['LOCAL_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_SIZE', 'MPI_LOCALNRANKS', 'MV2_COMM_WORLD_LOCAL_SIZE', 'SLURM_STEP_TASKS_PER_NODE', 'SLURM_TASKS_PER_NODE'];
const MACHINE_RANK_VARS = ['GROUP_RANK', 'NODE_RANK', 'OMPI_COMM_WORLD_NODE_RANK', 'SLURM_NODEID'];
const RANK_VARS = ['RANK', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK', 'MV2_COMM_WORLD_RANK', 'SLURM_PROCID'];

/**
 * The world settings the launcher's variables give, read by {@link detectWorld}
 * (torchrun / `accelerate launch`, MPI, SLURM): only what the variables say.
 */
function worldFromEnv(env: EnvironmentVariables, issues: { source: string; issue: ConfigIssue }[]): Partial<Record<WorldSettingName, WorldValue>> {
  let w;
  try {
    w = detectWorld(env, 1);
  } catch (e) {
    issues.push({ source: 'the environment', issue: { kind: 'invalid-value', key: 'world', message: (e as Error).message } });
    return {};
  }
  const read = (names: readonly string[]) => names.find((n) => w.readFrom[n] !== undefined);
  const out: Partial<Record<WorldSettingName, WorldValue>> = {};
  const size = read(WORLD_SIZE_VARS);
  if (size) out.numProcesses = { value: w.worldSize, variable: size, raw: w.readFrom[size] };
  const local = read(LOCAL_SIZE_VARS);
  if (size && local) {
    const group = env.GROUP_WORLD_SIZE;
    out.numMachines =
      group !== undefined && group.trim() === String(w.numMachines)
        ? { value: w.numMachines, variable: 'GROUP_WORLD_SIZE', raw: group }
        : { value: w.numMachines, variable: `${size} / ${local}`, raw: undefined };
  }
  const machine = read(MACHINE_RANK_VARS);
  if (machine) out.machineRank = { value: w.machineRank, variable: machine, raw: w.readFrom[machine] };
  else if (out.numMachines) out.machineRank = { value: w.machineRank, variable: `${read(RANK_VARS) ?? 'rank'} / ${local}`, raw: undefined };
  if (w.readFrom.MASTER_ADDR !== undefined) out.mainProcessIp = { value: w.readFrom.MASTER_ADDR, variable: 'MASTER_ADDR', raw: w.readFrom.MASTER_ADDR };
  else if (w.readFrom.SLURM_JOB_NODELIST !== undefined && w.masterAddr) {
    out.mainProcessIp = { value: w.masterAddr, variable: 'SLURM_JOB_NODELIST', raw: undefined };
  }
  if (w.readFrom.MASTER_PORT !== undefined) out.mainProcessPort = { value: w.masterPort, variable: 'MASTER_PORT', raw: w.readFrom.MASTER_PORT };
  return out;
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function formatValue(v: unknown): string {
  return v === undefined ? '(unset)' : v === null ? 'null' : String(v);
}

/** The plain values of a resolved configuration (for plugins and trackers). */
export function resolvedValues(resolved: ResolvedSettings): ResolvedValues {
  const out: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) out[name] = resolved[name].value;
  return out as unknown as ResolvedValues;
}

/**
 * A human-readable table of every setting, its value, where it came from and
 * the exact variable/file/argument, followed by any warnings:
 *
 * ```text
 * setting                    value   source       detail
 * mixedPrecision             fp16    env          ACCELERATE_MIXED_PRECISION
 * gradientAccumulationSteps  1       default
 * ```
 */
export function formatProvenance(resolved: ResolvedSettings & { warnings?: readonly string[] }): string {
  const rows: string[][] = [['setting', 'value', 'source', 'detail']];
  for (const name of SETTING_NAMES) {
    const s = resolved[name];
    rows.push([name, formatValue(s.value), s.source, s.detail]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd(),
  );
  for (const w of resolved.warnings ?? []) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

/**
 * The plugin sections as a table (`section.key  value  source  detail`).
 * Without `names`: the values something set (source other than `default`),
 * so a plain run prints nothing but a note; with `names`: every row of those
 * sections.
 */
export function formatSections(resolved: { readonly sections: ResolvedSections }, names?: readonly SettingSectionName[]): string {
  const rows: string[][] = [['setting', 'value', 'source', 'detail']];
  for (const section of names ?? SETTING_SECTIONS) {
    for (const [key, s] of Object.entries(resolved.sections[section] as Record<string, SectionSetting<unknown>>)) {
      if (!names && s.source === 'default') continue;
      rows.push([`${section}.${key}`, Array.isArray(s.value) ? s.value.join(',') : formatValue(s.value), s.source, s.detail]);
    }
  }
  if (rows.length === 1) return '(every plugin setting at its default)';
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
