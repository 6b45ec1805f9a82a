/**
 * The settings table: one row per plugin setting, for the sections
 * `fsdp`, `deepspeed`, `megatron`, `parallelism`, `dynamo` and `fp8`.
 *
 * A row names the setting in every place it appears — its key in
 * `default_config.yaml` (as Python's `accelerate config` writes it,
 * `fsdp_config.fsdp_sharding_strategy`), its `accelerate launch` flag
 * (`--fsdp_sharding_strategy`), the environment variable the launcher exports
 * to the ranks and the plugins read (`FSDP_SHARDING_STRATEGY`) — with its
 * type, allowed values, default and help. Everything else is derived from the
 * rows: the config-file schema of the dict sections ({@link sectionFileFields}),
 * the launch flags of these groups ({@link sectionLaunchFlags}), the list of
 * known variables, the typed, layered resolution with provenance
 * ({@link resolveSections}, used by the launcher and by the ranks), and the
 * launcher's export ({@link exportSection}). Adding a setting is adding a row.
 *
 * The core settings (mixed precision, process counts, …) are the `core`
 * rows in `resolve.ts`, which carry their special rules (world variables,
 * `distributed_type`).
 * @module
 */
import type { EnvironmentVariables } from '../state/environment.js';
import type { LaunchFlagGroup, LaunchFlagSpec, LaunchFlagType } from '../launch/flags.js';
import type { ConfigFieldSpec, ConfigValueType } from './schema.js';
import { showValue, suggestClosest, type ConfigIssue } from './errors.js';
import { strToBoolOrUndefined } from './bool.js';

export { strToBoolOrUndefined };

// ---- value sets -------------------------------------------------------------

/** Torch dynamo backends (`dynamo_config.dynamo_backend`, `ACCELERATE_DYNAMO_BACKEND`), upper case. */
export const DYNAMO_BACKENDS = [
  'NO',
  'EAGER',
  'AOT_EAGER',
  'INDUCTOR',
  'AOT_TS_NVFUSER',
  'NVPRIMS_NVFUSER',
  'CUDAGRAPHS',
  'OFI',
  'FX2TRT',
  'ONNXRT',
  'TENSORRT',
  'AOT_TORCHXLA_TRACE_ONCE',
  'TORCHXLA_TRACE_ONCE',
  'TVM',
  'HPU_BACKEND',
  'NEURON',
] as const;
/** Torch compile modes. */
export const DYNAMO_MODES = ['default', 'reduce-overhead', 'max-autotune'] as const;
/** FSDP1 sharding strategies (also accepted as 1..5). */
export const FSDP_SHARDING_STRATEGIES = ['FULL_SHARD', 'SHARD_GRAD_OP', 'NO_SHARD', 'HYBRID_SHARD', 'HYBRID_SHARD_ZERO2'] as const;
/** FSDP auto-wrap policies. */
export const FSDP_AUTO_WRAP_POLICIES = ['TRANSFORMER_BASED_WRAP', 'SIZE_BASED_WRAP', 'NO_WRAP'] as const;
/** FSDP backward prefetch policies (also accepted as 1..3). */
export const FSDP_BACKWARD_PREFETCH = ['BACKWARD_PRE', 'BACKWARD_POST', 'NO_PREFETCH'] as const;
/** FSDP state dict types (FSDP2 supports the sharded and full ones). */
export const FSDP_STATE_DICT_TYPES = ['FULL_STATE_DICT', 'LOCAL_STATE_DICT', 'SHARDED_STATE_DICT'] as const;
/** DeepSpeed multi-node launchers. */
export const DEEPSPEED_MULTINODE_LAUNCHERS = ['pdsh', 'standard', 'openmpi', 'mvapich', 'mpich', 'nossh', 'slurm'] as const;
/** DeepSpeed offload devices. */
export const DEEPSPEED_OFFLOAD_DEVICES = ['none', 'cpu', 'nvme'] as const;

/** A torch dynamo backend name, upper case (`NO` = off). */
export type DynamoBackendName = (typeof DYNAMO_BACKENDS)[number];
/** An FSDP1 sharding strategy. */
export type FsdpShardingStrategy = (typeof FSDP_SHARDING_STRATEGIES)[number];

// The dynamo flag of Python's `accelerate launch` also lists these (one misspelt upstream).
const EXTRA_DYNAMO_FLAG_BACKENDS = ['IPEX', 'TORHCHXLA_TRACE_ONCE'];
const DYNAMO_BACKEND_FLAG_CHOICES = [
  'no', 'eager', 'aot_eager', 'inductor', 'aot_ts_nvfuser', 'nvprims_nvfuser', 'cudagraphs', 'ofi', 'fx2trt', 'onnxrt',
  'tensorrt', 'aot_torchxla_trace_once', 'torhchxla_trace_once', 'ipex', 'tvm', 'hpu_backend',
];

// ---- rows -------------------------------------------------------------------

/** A plugin section of the settings table. */
export type SettingSectionName = 'fsdp' | 'deepspeed' | 'megatron' | 'parallelism' | 'dynamo' | 'fp8';

/** Every plugin section, in table order. */
export const SETTING_SECTIONS: readonly SettingSectionName[] = ['fsdp', 'deepspeed', 'megatron', 'parallelism', 'dynamo', 'fp8'];

/** The value type of a row (after parsing: env text and YAML strings become this). */
export type SettingType = 'boolean' | 'integer' | 'number' | 'string' | 'boolean[]' | 'custom';

/** Outcome of parsing one raw value. */
export type ParseResult<T> = { ok: true; value: T } | { ok: false; expected: string };

/** One row of the settings table. `T` is the resolved value's type. */
export interface SettingRow<T = unknown> {
  readonly section: SettingSectionName;
  /** camelCase key in the section (`shardingStrategy`). */
  readonly key: string;
  /** Dotted key in `default_config.yaml` (`fsdp_config.fsdp_sharding_strategy`); undefined = not in the file. */
  readonly yaml: string | undefined;
  /** `accelerate launch` flag without dashes (`fsdp_sharding_strategy`); undefined = none. */
  readonly flag: string | undefined;
  /** The flag is defined by the core flags (e.g. `gradient_accumulation_steps`): read here, not declared again. */
  readonly sharedFlag: boolean;
  /** Environment variable the launcher exports and the ranks read; undefined = not exported. */
  readonly env: string | undefined;
  /** For `boolean[]` rows exported as one variable per element (FP8's FPROP/DGRAD/WGRAD). */
  readonly envParts: readonly string[] | undefined;
  readonly type: SettingType;
  /** Allowed values (canonical spelling). */
  readonly enum: readonly (string | number)[] | undefined;
  /** Value when nothing sets it (the plugin's default). */
  readonly default: T;
  /** The launcher's default (Python's argparse default), exported even when not set; undefined = not exported unless set. */
  readonly flagDefault: T | undefined;
  /** Export the row's {@link default} even when nothing set it. */
  readonly exportAlways: boolean;
  /** Case of the exported text. */
  readonly exportCase: 'lower' | 'upper' | undefined;
  /** The row is exported only when this holds for the section's values. */
  readonly exportWhen: ((values: Readonly<Record<string, unknown>>) => boolean) | undefined;
  readonly help: string;
  /** Kept only so that older files load. */
  readonly legacy: boolean;
  /** How the YAML key is validated by the config-file schema. */
  readonly fileSpec: ConfigFieldSpec;
  /** How the flag reads its text. */
  readonly flagType: LaunchFlagType;
  readonly flagChoices: readonly string[] | undefined;
  readonly valueName: string;
  /** Reads a value from the file, the environment (text), a flag or code; checks type and allowed values. */
  parse(raw: unknown): ParseResult<T>;
  /** The exported variables' text. */
  toEnv(value: T): Record<string, string>;
}

interface RowInput<T> {
  /** Sub-key in the section (as `accelerate config` writes it). */
  yaml?: string;
  flag?: string | null;
  sharedFlag?: boolean;
  env?: string | null;
  envParts?: readonly string[];
  type: SettingType;
  enum?: readonly (string | number)[];
  /** Numbers accepted as aliases of the enum names (1 -> enum[0]). */
  numericAliases?: boolean;
  caseInsensitive?: boolean;
  default?: T;
  flagDefault?: T;
  exportAlways?: boolean;
  exportCase?: 'lower' | 'upper';
  exportWhen?: (values: Readonly<Record<string, unknown>>) => boolean;
  help: string;
  legacy?: boolean;
  fileType?: ConfigValueType | readonly ConfigValueType[];
  fileEnum?: readonly (string | number)[];
  flagType?: LaunchFlagType;
  flagChoices?: readonly string[];
  valueName?: string;
  parse?: (raw: unknown) => ParseResult<T>;
}

const ok = <T>(value: T): ParseResult<T> => ({ ok: true, value });
const fail = (expected: string): ParseResult<never> => ({ ok: false, expected });

const BOOL_WORDS = 'a boolean (true/false, yes/no, 1/0)';

function parseBool(raw: unknown): ParseResult<boolean> {
  if (typeof raw === 'boolean') return ok(raw);
  if (typeof raw === 'string') {
    const b = strToBoolOrUndefined(raw);
    if (b !== undefined) return ok(b);
  }
  if (raw === 0 || raw === 1) return ok(raw === 1);
  return fail(BOOL_WORDS);
}

function parseNumber(raw: unknown, integer: boolean): ParseResult<number> {
  let n: number | undefined;
  if (typeof raw === 'number') n = raw;
  else if (typeof raw === 'string' && raw.trim() !== '') n = Number(raw.trim());
  const words = integer ? 'a whole number' : 'a number';
  if (n === undefined || !Number.isFinite(n)) return fail(words);
  if (integer && !Number.isInteger(n)) return fail(words);
  return ok(n);
}

function enumWords(values: readonly (string | number)[], caseInsensitive: boolean): string {
  return `one of: ${values.join(', ')}${caseInsensitive ? ' (any case)' : ''}`;
}

function genericParse<T>(input: RowInput<T>): (raw: unknown) => ParseResult<T> {
  const values = input.enum;
  const ci = input.caseInsensitive ?? false;
  const checkEnum = (v: string | number): ParseResult<T> => {
    if (!values) return ok(v as T);
    const hit = values.find((e) => e === v || (ci && typeof e === 'string' && typeof v === 'string' && e.toLowerCase() === v.toLowerCase()));
    if (hit !== undefined) return ok(hit as T);
    if (input.numericAliases) {
      const n = typeof v === 'number' ? v : /^\d+$/.test(String(v).trim()) ? Number(String(v).trim()) : NaN;
      if (Number.isInteger(n) && n >= 1 && n <= values.length) return ok(values[n - 1] as T);
    }
    const near = typeof v === 'string' ? suggestClosest(v, values.map(String)) : undefined;
    const aliases = input.numericAliases ? ` (or 1..${values.length})` : '';
    return fail(`${enumWords(values, ci)}${aliases}${near ? ` (did you mean ${near}?)` : ''}`);
  };
  return (raw) => {
    switch (input.type) {
      case 'boolean':
        return parseBool(raw) as ParseResult<T>;
      case 'integer':
      case 'number': {
        const n = parseNumber(raw, input.type === 'integer');
        return n.ok ? checkEnum(n.value) : n;
      }
      case 'string': {
        if (typeof raw === 'number' || typeof raw === 'boolean') raw = String(raw);
        if (typeof raw !== 'string') return fail(values ? enumWords(values, ci) : 'a string');
        return checkEnum(raw);
      }
      case 'boolean[]': {
        const parts = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()) : raw;
        if (!Array.isArray(parts) || parts.length === 0) return fail('booleans separated by commas (e.g. true,false,true)');
        const out: boolean[] = [];
        for (const p of parts) {
          const b = parseBool(p);
          if (!b.ok) return fail('booleans separated by commas (e.g. true,false,true)');
          out.push(b.value);
        }
        return ok(out as T);
      }
      case 'custom':
        throw new Error('custom rows need parse');
    }
  };
}

function fileTypeOf(input: RowInput<unknown>): ConfigValueType | readonly ConfigValueType[] {
  if (input.fileType) return input.fileType;
  switch (input.type) {
    case 'boolean':
      return 'boolish';
    case 'boolean[]':
      return ['boolean[]', 'string'];
    case 'custom':
      return 'string';
    default:
      return input.numericAliases ? ['string', 'integer'] : input.type;
  }
}

function flagTypeOf(input: RowInput<unknown>): LaunchFlagType {
  if (input.flagType) return input.flagType;
  switch (input.type) {
    case 'boolean':
      return 'boolish';
    case 'integer':
      return input.numericAliases ? 'string' : 'integer';
    case 'number':
      return 'number';
    default:
      return 'string';
  }
}

const VALUE_NAMES: Record<SettingType, string> = {
  boolean: 'bool',
  integer: 'n',
  number: 'x',
  string: 'value',
  'boolean[]': 'a,b,c',
  custom: 'value',
};

function envText(value: unknown, exportCase: 'lower' | 'upper' | undefined): string {
  const text = Array.isArray(value) ? value.join(',') : String(value);
  return exportCase === 'lower' ? text.toLowerCase() : exportCase === 'upper' ? text.toUpperCase() : text;
}

interface SectionMeta {
  /** Dict section of `default_config.yaml`. */
  readonly yaml: string;
  /** `accelerate launch` adds this prefix to sub-keys that lack it (see `lookupSectionKey`). */
  readonly keyPrefix: string | undefined;
  /** Flag names: this prefix + the sub-key without {@link keyPrefix}. */
  readonly flagPrefix: string;
  /** Variable names: this prefix + the upper-cased sub-key without {@link envStrip}. */
  readonly envPrefix: string;
  readonly envStrip: string;
  readonly flagGroup: LaunchFlagGroup;
  readonly description: string;
}

/** Where each section lives in the file, the flags and the environment. */
export const SECTION_META: Readonly<Record<SettingSectionName, SectionMeta>> = {
  fsdp: { yaml: 'fsdp_config', keyPrefix: 'fsdp_', flagPrefix: 'fsdp_', envPrefix: 'FSDP_', envStrip: 'fsdp_', flagGroup: 'fsdp', description: 'FSDP plugin settings (distributed_type FSDP).' },
  deepspeed: { yaml: 'deepspeed_config', keyPrefix: undefined, flagPrefix: '', envPrefix: 'ACCELERATE_DEEPSPEED_', envStrip: '', flagGroup: 'deepspeed', description: 'DeepSpeed plugin settings (distributed_type DEEPSPEED).' },
  megatron: { yaml: 'megatron_lm_config', keyPrefix: undefined, flagPrefix: '', envPrefix: 'MEGATRON_LM_', envStrip: 'megatron_lm_', flagGroup: 'megatron_lm', description: 'Megatron-LM plugin settings (distributed_type MEGATRON_LM).' },
  parallelism: { yaml: 'parallelism_config', keyPrefix: undefined, flagPrefix: '', envPrefix: 'PARALLELISM_CONFIG_', envStrip: 'parallelism_config_', flagGroup: 'parallelism', description: 'N-D parallelism sizes (FSDP2).' },
  dynamo: { yaml: 'dynamo_config', keyPrefix: 'dynamo_', flagPrefix: 'dynamo_', envPrefix: 'ACCELERATE_DYNAMO_', envStrip: 'dynamo_', flagGroup: 'resources', description: 'torch.compile settings.' },
  fp8: { yaml: 'fp8_config', keyPrefix: 'fp8_', flagPrefix: 'fp8_', envPrefix: 'ACCELERATE_FP8_', envStrip: 'fp8_', flagGroup: 'fp8', description: 'FP8 recipe settings (used when mixed_precision is fp8).' },
};

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * Builds the rows of one section: `key -> row`, where key is the camelCase
 * sub-key without the section's prefix. Names not given follow the section's
 * rules (flag `fsdp_` + bare key, variable `FSDP_` + bare key upper-cased).
 */
function defineSection<S extends SettingSectionName, R extends Record<string, RowInput<any>>>(
  section: S,
  rows: R,
): { readonly [K in keyof R]: R[K] extends RowInput<infer T> ? SettingRow<T> : never } {
  const meta = SECTION_META[section];
  const out: Record<string, SettingRow> = {};
  for (const [key, input] of Object.entries(rows) as [string, RowInput<unknown>][]) {
    const sub = input.yaml!;
    const bare = meta.envStrip && sub.startsWith(meta.envStrip) ? sub.slice(meta.envStrip.length) : sub;
    const flag = input.flag === null ? undefined : (input.flag ?? (sub.startsWith(meta.flagPrefix) ? sub : meta.flagPrefix + sub));
    const env = input.env === null ? undefined : (input.env ?? meta.envPrefix + bare.toUpperCase());
    const parse = input.parse ?? genericParse(input);
    const exportCase = input.exportCase;
    const envParts = input.envParts;
    const fileSpec: ConfigFieldSpec = {
      type: fileTypeOf(input),
      ...(input.fileEnum || input.enum
        ? { enum: [...(input.fileEnum ?? input.enum ?? []), ...(input.numericAliases ? (input.enum ?? []).map((_, i) => i + 1) : [])] }
        : {}),
      ...(input.caseInsensitive ? { caseInsensitive: true } : {}),
      ...(input.default !== undefined && !input.legacy ? { default: input.default } : {}),
      description: input.help,
      ...(input.legacy ? { legacy: true } : {}),
    };
    out[key] = Object.freeze({
      section,
      key,
      yaml: `${meta.yaml}.${sub}`,
      flag,
      sharedFlag: input.sharedFlag ?? false,
      env,
      envParts,
      type: input.type,
      enum: input.enum,
      default: input.default,
      flagDefault: input.flagDefault,
      exportAlways: input.exportAlways ?? false,
      exportCase,
      exportWhen: input.exportWhen,
      help: input.help,
      legacy: input.legacy ?? false,
      fileSpec,
      flagType: flagTypeOf(input),
      // Rows that say `flagChoices: undefined` check their flag's value against the row only (e.g. names or numbers).
      flagChoices: 'flagChoices' in input ? input.flagChoices : input.enum && input.type === 'string' ? input.enum.map(String) : undefined,
      valueName: input.valueName ?? VALUE_NAMES[input.type],
      parse,
      toEnv: (value: unknown): Record<string, string> => {
        if (envParts && Array.isArray(value)) {
          return Object.fromEntries(envParts.map((name, i) => [name, String(value[i] ?? false)]));
        }
        return env === undefined ? {} : { [env]: envText(value, exportCase) };
      },
    } satisfies SettingRow);
  }
  return out as never;
}

// Strategy names or their numbers 1..5 (FSDP1), case-insensitive.
function strategyOrBool(raw: unknown): ParseResult<boolean | FsdpShardingStrategy> {
  const b = parseBool(raw);
  if (b.ok && typeof raw !== 'number') return b;
  const text = String(raw).trim().toUpperCase();
  const hit = FSDP_SHARDING_STRATEGIES.find((s) => s === text);
  if (hit) return ok(hit);
  if (/^[1-5]$/.test(text)) return ok(FSDP_SHARDING_STRATEGIES[Number(text) - 1]);
  return fail(`a boolean (FSDP2) or one of: ${FSDP_SHARDING_STRATEGIES.join(', ')} (FSDP1)`);
}

function boolOrString(raw: unknown): ParseResult<boolean | string> {
  if (typeof raw === 'boolean') return ok(raw);
  if (typeof raw === 'string') {
    const b = strToBoolOrUndefined(raw);
    return ok(b ?? raw);
  }
  return fail('a boolean or a name');
}

function intOrString(raw: unknown): ParseResult<string> {
  if (typeof raw === 'number' && Number.isInteger(raw)) return ok(String(raw));
  if (typeof raw === 'string') return ok(raw);
  return fail('a whole number or a string');
}

const FSDP_ROWS = defineSection('fsdp', {
  version: { yaml: 'fsdp_version', type: 'integer', enum: [1, 2], default: 1 as 1 | 2, flagDefault: 1 as 1 | 2, flagType: 'string', flagChoices: ['1', '2'], valueName: 'v', help: 'FSDP version (2 = per-parameter sharding).' },
  reshardAfterForward: {
    yaml: 'fsdp_reshard_after_forward',
    type: 'custom',
    parse: strategyOrBool,
    fileType: ['boolish', 'string', 'integer'],
    fileEnum: [...FSDP_SHARDING_STRATEGIES, 1, 2, 3, 4, 5],
    caseInsensitive: true,
    default: true as boolean | FsdpShardingStrategy,
    flagDefault: true as boolean | FsdpShardingStrategy,
    exportCase: 'lower',
    help: 'FSDP2: reshard after forward (bool); FSDP1: the sharding strategy name.',
  },
  shardingStrategy: {
    yaml: 'fsdp_sharding_strategy',
    type: 'string',
    enum: FSDP_SHARDING_STRATEGIES,
    numericAliases: true,
    caseInsensitive: true,
    legacy: true,
    default: 'FULL_SHARD' as FsdpShardingStrategy,
    flagDefault: 'FULL_SHARD' as FsdpShardingStrategy,
    flagChoices: undefined,
    valueName: 'name',
    help: 'FSDP1 sharding strategy (deprecated in favour of fsdp_reshard_after_forward).',
  },
  offloadParams: { yaml: 'fsdp_offload_params', type: 'boolean', default: false, flagDefault: false, exportCase: 'lower', help: 'Offload parameters and gradients to CPU.' },
  autoWrapPolicy: {
    yaml: 'fsdp_auto_wrap_policy',
    type: 'string',
    enum: FSDP_AUTO_WRAP_POLICIES,
    caseInsensitive: true,
    default: undefined as (typeof FSDP_AUTO_WRAP_POLICIES)[number] | undefined,
    valueName: 'policy',
    help: 'How modules are wrapped into FSDP units: TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP or NO_WRAP.',
  },
  transformerLayerClsToWrap: {
    yaml: 'fsdp_transformer_layer_cls_to_wrap',
    env: 'FSDP_TRANSFORMER_CLS_TO_WRAP',
    type: 'string',
    default: undefined as string | undefined,
    valueName: 'names',
    help: 'Comma-separated layer class names to wrap (TRANSFORMER_BASED_WRAP).',
  },
  minNumParams: { yaml: 'fsdp_min_num_params', type: 'integer', default: 100_000_000, flagDefault: 100_000_000, help: 'Minimum parameters per unit (SIZE_BASED_WRAP).' },
  backwardPrefetch: {
    yaml: 'fsdp_backward_prefetch',
    type: 'string',
    enum: FSDP_BACKWARD_PREFETCH,
    numericAliases: true,
    caseInsensitive: true,
    flagChoices: undefined,
    default: undefined as (typeof FSDP_BACKWARD_PREFETCH)[number] | undefined,
    valueName: 'policy',
    help: 'Backward prefetch policy (FSDP1 only).',
  },
  stateDictType: {
    yaml: 'fsdp_state_dict_type',
    type: 'string',
    enum: FSDP_STATE_DICT_TYPES,
    caseInsensitive: true,
    flagChoices: undefined,
    default: undefined as (typeof FSDP_STATE_DICT_TYPES)[number] | undefined,
    valueName: 'type',
    help: 'State dict type used for checkpoints.',
  },
  forwardPrefetch: { yaml: 'fsdp_forward_prefetch', type: 'boolean', default: false, flagDefault: false, exportCase: 'lower', help: 'Prefetch the next all-gather during forward (FSDP1 only).' },
  useOrigParams: { yaml: 'fsdp_use_orig_params', type: 'boolean', default: true, flagDefault: true, exportCase: 'lower', help: 'Allow mixed requires_grad parameters (FSDP1 only).' },
  cpuRamEfficientLoading: { yaml: 'fsdp_cpu_ram_efficient_loading', type: 'boolean', default: true, flagDefault: true, exportCase: 'lower', help: 'Only rank 0 loads the checkpoint; others start empty (needs fsdp_sync_module_states true).' },
  syncModuleStates: { yaml: 'fsdp_sync_module_states', type: 'boolean', default: true, flagDefault: true, exportCase: 'lower', help: 'Broadcast module states from rank 0 (FSDP1 only).' },
  activationCheckpointing: { yaml: 'fsdp_activation_checkpointing', type: 'boolean', default: false, flagDefault: false, exportCase: 'lower', help: 'Free activations in forward and recompute them in backward.' },
  ignoredModules: { yaml: 'fsdp_ignored_modules', flag: null, type: 'string', default: undefined as string | undefined, help: 'Regular expression of module names FSDP leaves alone.' },
});

const DEEPSPEED_ROWS = defineSection('deepspeed', {
  configFile: { yaml: 'deepspeed_config_file', env: 'ACCELERATE_DEEPSPEED_CONFIG_FILE', type: 'string', default: undefined as string | undefined, valueName: 'path', help: 'Path to a DeepSpeed JSON config; when set, the other DeepSpeed keys must not be.' },
  zeroStage: { yaml: 'zero_stage', type: 'integer', enum: [0, 1, 2, 3], default: 2 as 0 | 1 | 2 | 3, help: 'ZeRO optimisation stage.' },
  offloadOptimizerDevice: { yaml: 'offload_optimizer_device', type: 'string', enum: DEEPSPEED_OFFLOAD_DEVICES, default: 'none' as (typeof DEEPSPEED_OFFLOAD_DEVICES)[number], exportCase: 'lower', valueName: 'device', help: 'Where optimizer states are offloaded (ZeRO >= 2): none, cpu or nvme.' },
  offloadParamDevice: { yaml: 'offload_param_device', type: 'string', enum: DEEPSPEED_OFFLOAD_DEVICES, default: 'none' as (typeof DEEPSPEED_OFFLOAD_DEVICES)[number], exportCase: 'lower', valueName: 'device', help: 'Where parameters are offloaded (ZeRO >= 2): none, cpu or nvme.' },
  offloadOptimizerNvmePath: { yaml: 'offload_optimizer_nvme_path', type: 'string', default: undefined as string | undefined, valueName: 'path', help: 'NVMe path for optimizer offload.' },
  offloadParamNvmePath: { yaml: 'offload_param_nvme_path', type: 'string', default: undefined as string | undefined, valueName: 'path', help: 'NVMe path for parameter offload.' },
  gradientAccumulationSteps: {
    yaml: 'gradient_accumulation_steps',
    sharedFlag: true,
    env: 'ACCELERATE_GRADIENT_ACCUMULATION_STEPS',
    type: 'integer',
    default: 1,
    help: 'Gradient accumulation steps passed to DeepSpeed (exported as ACCELERATE_GRADIENT_ACCUMULATION_STEPS by the core settings).',
  },
  gradientClipping: { yaml: 'gradient_clipping', env: 'ACCELERATE_GRADIENT_CLIPPING', type: 'number', default: 1.0, exportCase: 'lower', help: 'Gradient clipping value.' },
  zero3InitFlag: { yaml: 'zero3_init_flag', env: 'ACCELERATE_DEEPSPEED_ZERO3_INIT', type: 'boolean', default: false, exportCase: 'lower', help: 'Use `deepspeed.zero.Init` to build massive models (ZeRO-3).' },
  zero3Save16bitModel: { yaml: 'zero3_save_16bit_model', type: 'boolean', default: false, exportCase: 'lower', help: 'Save consolidated 16-bit weights with ZeRO-3.' },
  hostfile: { yaml: 'deepspeed_hostfile', env: null, type: 'string', default: undefined as string | undefined, valueName: 'path', help: 'Hostfile for multi-node DeepSpeed (`hostname slots=N` rows).' },
  exclusionFilter: { yaml: 'deepspeed_exclusion_filter', env: null, type: 'string', default: undefined as string | undefined, valueName: 'filter', help: 'DeepSpeed host exclusion filter.' },
  inclusionFilter: { yaml: 'deepspeed_inclusion_filter', env: null, type: 'string', default: undefined as string | undefined, valueName: 'filter', help: 'DeepSpeed host inclusion filter.' },
  multinodeLauncher: {
    yaml: 'deepspeed_multinode_launcher',
    env: null,
    type: 'string',
    enum: DEEPSPEED_MULTINODE_LAUNCHERS,
    default: 'pdsh' as (typeof DEEPSPEED_MULTINODE_LAUNCHERS)[number],
    valueName: 'name',
    help: 'Launcher used for multi-node DeepSpeed.',
  },
  moeLayerClsNames: { yaml: 'deepspeed_moe_layer_cls_names', env: 'ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES', type: 'string', default: undefined as string | undefined, valueName: 'names', help: 'Comma-separated MoE layer class names.' },
});

const mBool = (yaml: string, help: string, dflt?: boolean) =>
  dflt === undefined
    ? ({ yaml, type: 'boolean', default: undefined as boolean | undefined, help } as const)
    : ({ yaml, type: 'boolean', default: dflt as boolean, flagDefault: dflt as boolean, help } as const);
const mInt = (yaml: string, help: string, dflt?: number) =>
  dflt === undefined
    ? ({ yaml, type: 'integer', default: undefined as number | undefined, help } as const)
    : ({ yaml, type: 'integer', default: dflt as number, flagDefault: dflt as number, help } as const);

const MEGATRON_ROWS = defineSection('megatron', {
  tpDegree: mInt('megatron_lm_tp_degree', 'Tensor parallelism degree.', 1),
  ppDegree: mInt('megatron_lm_pp_degree', 'Pipeline parallelism degree.', 1),
  numMicroBatches: mInt('megatron_lm_num_micro_batches', 'Micro-batches when the PP degree > 1.'),
  sequenceParallelism: mBool('megatron_lm_sequence_parallelism', 'Sequence parallelism (TP degree > 1).'),
  recomputeActivations: mBool('megatron_lm_recompute_activations', 'Selective activation recomputation.'),
  useDistributedOptimizer: mBool('megatron_lm_use_distributed_optimizer', 'Shard optimizer state across data-parallel ranks.'),
  gradientClipping: { yaml: 'megatron_lm_gradient_clipping', type: 'number', default: 1.0, flagDefault: 1.0, help: 'Global L2-norm gradient clipping (0 disables).' },
  useCustomFsdp: mBool('megatron_lm_use_custom_fsdp', 'Use Megatron custom FSDP.', false),
  noLoadOptim: mBool('megatron_lm_no_load_optim', 'Do not load the optimizer.', false),
  noSaveOptim: mBool('megatron_lm_no_save_optim', 'Do not save the optimizer.', false),
  eodMaskLoss: mBool('megatron_lm_eod_mask_loss', 'Mask the loss at end-of-document tokens.', false),
  overlapCpuOptimizerD2hH2d: mBool('megatron_lm_overlap_cpu_optimizer_d2h_h2d', 'Overlap CPU optimizer step with transfers.', false),
  optimizerCpuOffload: mBool('megatron_lm_optimizer_cpu_offload', 'Offload the optimizer to CPU.', false),
  usePrecisionAwareOptimizer: mBool('megatron_lm_use_precision_aware_optimizer', 'Precision-aware optimizer.', false),
  decoderLastPipelineNumLayers: mInt('megatron_lm_decoder_last_pipeline_num_layers', 'Decoder layers in the last pipeline stage.'),
  recomputeGranularity: { yaml: 'megatron_lm_recompute_granularity', type: 'string', enum: ['full', 'selective'], default: undefined as 'full' | 'selective' | undefined, valueName: 'g', help: 'Recompute granularity: full or selective.' },
  recomputeMethod: { yaml: 'megatron_lm_recompute_method', type: 'string', enum: ['uniform', 'block'], default: undefined as 'uniform' | 'block' | undefined, valueName: 'm', help: 'Recompute method: uniform or block.' },
  recomputeNumLayers: mInt('megatron_lm_recompute_num_layers', 'Layers to recompute.'),
  attentionBackend: { yaml: 'megatron_lm_attention_backend', type: 'custom', parse: boolOrString, fileType: ['boolish', 'string'], default: undefined as boolean | string | undefined, valueName: 'name', help: 'Attention backend.' },
  expertModelParallelSize: mInt('megatron_lm_expert_model_parallel_size', 'Expert model parallel size.'),
  expertTensorParallelSize: mInt('megatron_lm_expert_tensor_parallel_size', 'Expert tensor parallel size.'),
  contextParallelSize: mInt('megatron_lm_context_parallel_size', 'Context parallel size.'),
  attentionDropout: { yaml: 'megatron_lm_attention_dropout', type: 'number', default: undefined as number | undefined, valueName: 'p', help: 'Attention dropout rate.' },
  hiddenDropout: { yaml: 'megatron_lm_hidden_dropout', type: 'number', default: undefined as number | undefined, valueName: 'p', help: 'Hidden dropout rate.' },
  attentionSoftmaxInFp32: mBool('megatron_lm_attention_softmax_in_fp32', 'Attention softmax in fp32.'),
  calculatePerTokenLoss: mBool('megatron_lm_calculate_per_token_loss', 'Per-token loss.'),
  useRotaryPositionEmbeddings: mBool('megatron_lm_use_rotary_position_embeddings', 'Rotary position embeddings.'),
});

const PARALLELISM_ROWS = defineSection('parallelism', {
  dpReplicateSize: { yaml: 'parallelism_config_dp_replicate_size', type: 'integer', default: 1, flagDefault: 1, help: 'Data-parallel replicas.' },
  dpShardSize: { yaml: 'parallelism_config_dp_shard_size', type: 'integer', default: 1, flagDefault: 1, help: 'FSDP shard group size.' },
  tpSize: { yaml: 'parallelism_config_tp_size', type: 'integer', default: 1, flagDefault: 1, help: 'Tensor parallel size.' },
  cpSize: { yaml: 'parallelism_config_cp_size', type: 'integer', default: 1, flagDefault: 1, help: 'Context parallel size.' },
  cpBackend: { yaml: 'parallelism_config_cp_backend', type: 'string', enum: ['torch'], default: 'torch' as const, flagDefault: 'torch' as const, valueName: 'name', help: 'Context parallel backend.' },
  cpCommStrategy: {
    yaml: 'parallelism_config_cp_comm_strategy',
    type: 'string',
    enum: ['allgather', 'alltoall'],
    flagChoices: undefined,
    default: 'allgather' as 'allgather' | 'alltoall',
    flagDefault: 'allgather' as 'allgather' | 'alltoall',
    exportWhen: (v) => Number(v.cpSize) > 1,
    valueName: 'name',
    help: 'Context parallel communication strategy: allgather or alltoall.',
  },
  spSize: { yaml: 'parallelism_config_sp_size', type: 'integer', default: 1, flagDefault: 1, help: 'Sequence parallel size.' },
  spBackend: { yaml: 'parallelism_config_sp_backend', type: 'string', enum: ['deepspeed'], default: 'deepspeed' as const, flagDefault: 'deepspeed' as const, valueName: 'name', help: 'Sequence parallel backend.' },
  spSeqLength: {
    yaml: 'parallelism_config_sp_seq_length',
    type: 'custom',
    parse: intOrString,
    fileType: ['integer', 'string'],
    default: undefined as string | undefined,
    exportWhen: (v) => Number(v.spSize) > 1,
    valueName: 'n',
    help: 'Sequence length when all batches share one.',
  },
  spSeqLengthIsVariable: { yaml: 'parallelism_config_sp_seq_length_is_variable', type: 'boolean', default: true, flagDefault: true, exportWhen: (v) => Number(v.spSize) > 1, help: 'Sequence length may change between batches.' },
  spAttnImplementation: {
    yaml: 'parallelism_config_sp_attn_implementation',
    type: 'string',
    default: 'sdpa',
    flagDefault: 'sdpa',
    exportWhen: (v) => Number(v.spSize) > 1,
    valueName: 'name',
    help: 'Attention implementation (sdpa, flash_attention_2, …).',
  },
});

const DYNAMO_ROWS = defineSection('dynamo', {
  backend: {
    yaml: 'dynamo_backend',
    type: 'string',
    enum: [...DYNAMO_BACKENDS, ...EXTRA_DYNAMO_FLAG_BACKENDS],
    fileEnum: DYNAMO_BACKENDS,
    caseInsensitive: true,
    default: 'NO' as DynamoBackendName,
    exportCase: 'upper',
    flagChoices: DYNAMO_BACKEND_FLAG_CHOICES,
    valueName: 'name',
    help: 'torch.compile backend (ACCELERATE_DYNAMO_BACKEND); no = off.',
  },
  mode: { yaml: 'dynamo_mode', type: 'string', enum: DYNAMO_MODES, default: 'default' as (typeof DYNAMO_MODES)[number], flagDefault: 'default' as (typeof DYNAMO_MODES)[number], valueName: 'mode', help: 'torch.compile mode.' },
  useFullgraph: { yaml: 'dynamo_use_fullgraph', type: 'boolean', default: false, exportAlways: true, flagType: 'boolean', help: 'Compile the whole model as one graph.' },
  useDynamic: { yaml: 'dynamo_use_dynamic', type: 'boolean', default: false, exportAlways: true, flagType: 'boolean', help: 'Dynamic shape tracing.' },
  useRegionalCompilation: { yaml: 'dynamo_use_regional_compilation', type: 'boolean', default: false, exportAlways: true, flagType: 'boolean', help: 'Compile repeated blocks once (regional compilation).' },
});

const FP8_ROWS = defineSection('fp8', {
  backend: { yaml: 'backend', type: 'string', enum: ['AO', 'TE', 'MSAMP'], caseInsensitive: true, default: undefined as 'AO' | 'TE' | 'MSAMP' | undefined, exportCase: 'lower', flagChoices: ['ao', 'te', 'msamp'], valueName: 'name', help: 'FP8 backend: torchao (ao), TransformerEngine (te) or MS-AMP (msamp).' },
  useAutocastDuringEval: { yaml: 'use_autocast_during_eval', type: 'boolean', default: false, flagType: 'boolean', help: 'Use FP8 autocast in eval mode (TE).' },
  margin: { yaml: 'margin', type: 'integer', default: 0, flagDefault: 0, help: 'Margin for the scaling factor (TE).' },
  interval: { yaml: 'interval', type: 'integer', default: 1, flagDefault: 1, help: 'How often the scaling factor is recomputed (TE).' },
  format: { yaml: 'fp8_format', type: 'string', enum: ['HYBRID', 'E4M3', 'E5M2'], caseInsensitive: true, default: 'HYBRID' as 'HYBRID' | 'E4M3' | 'E5M2', flagDefault: 'HYBRID' as 'HYBRID' | 'E4M3' | 'E5M2', valueName: 'format', help: 'FP8 recipe format (TE): HYBRID, E4M3 or E5M2.' },
  amaxHistoryLen: { yaml: 'amax_history_len', type: 'integer', default: 1024, flagDefault: 1024, help: 'Amax history length, as the recipe reads it (TE).' },
  // The questionnaire's spellings: `accelerate launch` exports them under these names too (read by nobody in Python).
  amaxHistoryLength: { yaml: 'amax_history_length', flag: null, type: 'integer', default: 1024, help: 'Amax history length, as `accelerate config` names it (TE).' },
  amaxComputeAlgo: { yaml: 'amax_compute_algo', type: 'string', enum: ['max', 'most_recent'], default: 'most_recent' as 'max' | 'most_recent', flagDefault: 'most_recent' as 'max' | 'most_recent', valueName: 'algo', help: 'Amax algorithm, as the recipe reads it (TE): max or most_recent.' },
  amaxComputeAlgorithm: { yaml: 'amax_compute_algorithm', flag: null, type: 'string', enum: ['max', 'most_recent'], default: undefined as 'max' | 'most_recent' | undefined, help: 'Amax algorithm, as `accelerate config` names it (TE).' },
  overrideLinearPrecision: {
    yaml: 'override_linear_precision',
    type: 'boolean[]',
    envParts: ['ACCELERATE_FP8_OVERRIDE_FPROP', 'ACCELERATE_FP8_OVERRIDE_DGRAD', 'ACCELERATE_FP8_OVERRIDE_WGRAD'],
    default: [false, false, false] as readonly boolean[],
    flagDefault: [false, false, false] as readonly boolean[],
    help: 'Run fprop, dgrad, wgrad GEMMs in higher precision: three booleans a,b,c (TE).',
  },
  optLevel: { yaml: 'opt_level', type: 'string', enum: ['O1', 'O2'], default: 'O2' as 'O1' | 'O2', flagDefault: 'O2' as 'O1' | 'O2', valueName: 'level', help: 'MS-AMP level, as the recipe reads it: O1 or O2.' },
  optimizationLevel: { yaml: 'optimization_level', flag: null, type: 'string', enum: ['O1', 'O2'], default: undefined as 'O1' | 'O2' | undefined, help: 'MS-AMP level, as `accelerate config` names it.' },
  enableFsdpFloat8AllGather: { yaml: 'enable_fsdp_float8_all_gather', type: 'boolean', default: true, flagDefault: true, help: 'FSDP2 float8 all-gather (torchao).' },
  padInnerDim: { yaml: 'pad_inner_dim', type: 'boolean', default: true, flagDefault: true, help: 'Pad inner dimensions for float8 matmuls (torchao).' },
  useMxfp8BlockScaling: { yaml: 'use_mxfp8_block_scaling', flag: null, type: 'boolean', default: false, help: 'Use MXFP8 block scaling (TE).' },
});

/**
 * The settings table: section -> camelCase key -> {@link SettingRow}.
 * `SETTINGS.fsdp.shardingStrategy.env === 'FSDP_SHARDING_STRATEGY'`.
 */
export const SETTINGS = Object.freeze({
  fsdp: FSDP_ROWS,
  deepspeed: DEEPSPEED_ROWS,
  megatron: MEGATRON_ROWS,
  parallelism: PARALLELISM_ROWS,
  dynamo: DYNAMO_ROWS,
  fp8: FP8_ROWS,
});

/** The rows of one section, by key. */
export type SectionRows<S extends SettingSectionName> = (typeof SETTINGS)[S];

/** The typed values of one section (`SectionValues<'fsdp'>['shardingStrategy']` is the strategy name). */
export type SectionValues<S extends SettingSectionName> = {
  -readonly [K in keyof SectionRows<S>]: SectionRows<S>[K] extends SettingRow<infer T> ? T : never;
};

/** FSDP settings (`resolved.sectionValues('fsdp')`). */
export type FsdpSettings = SectionValues<'fsdp'>;
/** DeepSpeed settings. */
export type DeepSpeedSettings = SectionValues<'deepspeed'>;
/** Megatron-LM settings. */
export type MegatronSettings = SectionValues<'megatron'>;
/** N-D parallelism settings. */
export type ParallelismSettings = SectionValues<'parallelism'>;
/** torch.compile settings. */
export type DynamoSettings = SectionValues<'dynamo'>;
/** FP8 recipe settings. */
export type Fp8Settings = SectionValues<'fp8'>;

/** Partial values per section: what a constructor or a plugin's `config` hook gives. */
export type SectionInputs = { readonly [S in SettingSectionName]?: Partial<SectionValues<S>> };

/** Every row of the table, in order. */
export function settingRows(section?: SettingSectionName): SettingRow[] {
  const sections = section ? [section] : SETTING_SECTIONS;
  return sections.flatMap((s) => Object.values(SETTINGS[s] as Record<string, SettingRow>));
}

/** The row with this flag name (without dashes), or undefined. */
export function settingRowByFlag(flag: string): SettingRow | undefined {
  return BY_FLAG.get(flag);
}
const BY_FLAG = new Map(settingRows().filter((r) => r.flag).map((r) => [r.flag!, r]));

/** Every variable a row exports or reads. */
export function settingEnvVars(): string[] {
  return settingRows().flatMap((r) => [...(r.env ? [r.env] : []), ...(r.envParts ?? [])]);
}

/** The config-file schema of a section's dict: sub-key -> field spec (derived from the rows). */
export function sectionFileFields(section: SettingSectionName): Record<string, ConfigFieldSpec> {
  const prefix = `${SECTION_META[section].yaml}.`;
  return Object.fromEntries(settingRows(section).map((r) => [r.yaml!.slice(prefix.length), r.fileSpec]));
}

/** The launch flags a section declares (derived from the rows; shared flags are declared by the core). */
export function sectionLaunchFlags(section: SettingSectionName): LaunchFlagSpec[] {
  return settingRows(section)
    .filter((r) => r.flag && !r.sharedFlag)
    .map((r) => ({
      name: r.flag!,
      type: r.flagType,
      group: SECTION_META[section].flagGroup,
      support: 'env' as const,
      help: r.help,
      ...(r.flagChoices ? { choices: r.flagChoices } : {}),
      ...(r.flagDefault !== undefined ? { default: Array.isArray(r.flagDefault) ? r.flagDefault.join(',') : (r.flagDefault as string | number | boolean) } : {}),
      valueName: r.valueName,
    }));
}

// ---- resolution ---------------------------------------------------------------

/** Where a section value came from (same words as the core settings). */
export type SectionSource = 'default' | 'plugin default' | 'config file' | 'env' | 'launch flag' | 'constructor';

/** A resolved section value with its origin. */
export interface SectionSetting<T> {
  readonly value: T;
  readonly source: SectionSource;
  /** `FSDP_SHARDING_STRATEGY`, `/x/default_config.yaml (fsdp_config.fsdp_sharding_strategy)`, `--fsdp_sharding_strategy`, … */
  readonly detail: string;
}

/** One resolved section: every key with value and origin. */
export type ResolvedSection<S extends SettingSectionName> = {
  readonly [K in keyof SectionValues<S>]: SectionSetting<SectionValues<S>[K]>;
};

/** Every resolved section. */
export type ResolvedSections = { readonly [S in SettingSectionName]: ResolvedSection<S> };

/** What a launcher told its ranks about an exported variable. */
export interface ExportedOrigin {
  readonly value: string;
  readonly source: SectionSource;
  readonly detail: string;
}

/** Inputs of {@link resolveSections}, highest precedence first. */
export interface SectionLayers {
  /** Values given in code (a plugin constructed with explicit fields). */
  code?: SectionInputs;
  /** `accelerate launch` flags by name (`fsdp_sharding_strategy`), as passed. */
  launchFlags?: ReadonlyMap<string, unknown> | Readonly<Record<string, unknown>>;
  /** Environment (the variables of the rows). */
  env?: EnvironmentVariables;
  /** What the launcher said about the variables it exported (their original sources). */
  exported?: Readonly<Record<string, ExportedOrigin>>;
  /** The config file's content (with its path, for details). */
  file?: { readonly path: string; readonly config: Readonly<Record<string, unknown>> } | null;
  /** Defaults a plugin contributes (its `config` hook); beaten by every source above. */
  pluginDefaults?: SectionInputs;
  /** Name of whoever gave `pluginDefaults`, for details. */
  pluginName?: string;
  /** Fall back to the launcher's defaults ({@link SettingRow.flagDefault}) rather than the plugin defaults (the launcher does). */
  launcherDefaults?: boolean;
}

/** A problem found while resolving: the row's source and the issue. */
export interface SectionProblem {
  readonly source: string;
  readonly issue: ConfigIssue;
}

function lookup(layer: SectionLayers['launchFlags'], name: string): unknown {
  if (!layer) return undefined;
  if (layer instanceof Map) return layer.get(name);
  return (layer as Record<string, unknown>)[name];
}

/** The value of a row's key in the file's section dict, honouring the prefix rule; with the key found. */
function fileValue(row: SettingRow, config: Readonly<Record<string, unknown>>): { value: unknown; key: string } | undefined {
  const meta = SECTION_META[row.section];
  const dict = config[meta.yaml];
  if (typeof dict !== 'object' || dict === null || Array.isArray(dict)) return undefined;
  const sub = row.yaml!.slice(meta.yaml.length + 1);
  const d = dict as Record<string, unknown>;
  const names = [sub];
  if (meta.keyPrefix) names.push(sub.startsWith(meta.keyPrefix) ? sub.slice(meta.keyPrefix.length) : meta.keyPrefix + sub);
  for (const n of names) {
    if (Object.hasOwn(d, n) && d[n] !== null && d[n] !== undefined) return { value: d[n], key: `${meta.yaml}.${n}` };
  }
  return undefined;
}

/** How a row's variable(s) read: the raw text to parse (joined for split rows) and the variable that was read. */
function envValue(row: SettingRow, env: EnvironmentVariables): { raw: string; variable: string; texts: Record<string, string> } | undefined {
  if (row.envParts) {
    const texts: Record<string, string> = {};
    for (const name of row.envParts) if (env[name] !== undefined && env[name] !== '') texts[name] = env[name]!;
    if (Object.keys(texts).length === 0) return undefined;
    return { raw: row.envParts.map((n) => texts[n] ?? 'false').join(','), variable: row.envParts.join('/'), texts };
  }
  if (!row.env) return undefined;
  const raw = env[row.env];
  if (raw === undefined || raw === '') return undefined;
  return { raw, variable: row.env, texts: { [row.env]: raw } };
}

function issueFor(row: SettingRow, key: string, value: unknown, expected: string, fix: string): ConfigIssue {
  return {
    kind: 'invalid-value',
    key,
    value,
    expected,
    message: `${key}=${showValue(value)} is not ${expected} (${row.section} setting ${row.key}). ${fix}`,
  };
}

/**
 * Resolves every section from its layers, recording each value's origin.
 *
 * Precedence, highest first: `constructor` > `launch flag` > `env` (a
 * variable the launcher exported reports the launcher's source: `config file`
 * or `launch flag`) > `config file` > `plugin default` > the launcher's
 * exported defaults > the row's `default`. Every value is checked against its
 * row (type, allowed values); problems are returned, one per value, naming the
 * field, the value, where it came from and how to fix it.
 */
export function resolveSections(layers: SectionLayers): { sections: ResolvedSections; problems: SectionProblem[] } {
  const env = layers.env ?? {};
  const exported = layers.exported ?? {};
  const problems: SectionProblem[] = [];
  const sections: Record<string, Record<string, SectionSetting<unknown>>> = {};
  for (const section of SETTING_SECTIONS) {
    const out: Record<string, SectionSetting<unknown>> = {};
    for (const row of settingRows(section)) {
      const take = (raw: unknown, source: SectionSource, detail: string, problemSource: string, key: string, fix: string): SectionSetting<unknown> | undefined => {
        const parsed = row.parse(raw);
        if (!parsed.ok) {
          problems.push({ source: problemSource, issue: issueFor(row, key, raw, parsed.expected, fix) });
          return undefined;
        }
        return { value: parsed.value, source, detail };
      };
      const candidates: (() => SectionSetting<unknown> | undefined)[] = [
        () => {
          const v = (layers.code?.[section] as Record<string, unknown> | undefined)?.[row.key];
          return v === undefined || v === null ? undefined : take(v, 'constructor', row.key, 'constructor arguments', `${section}.${row.key}`, `Pass ${describeRow(row)} as ${row.key}.`);
        },
        () => {
          if (!row.flag) return undefined;
          const v = lookup(layers.launchFlags, row.flag);
          return v === undefined || v === null ? undefined : take(v, 'launch flag', `--${row.flag}`, 'launch flags', `--${row.flag}`, `Pass --${row.flag} ${describeRow(row)}.`);
        },
      ];
      // Env: a launcher-exported default ranks below plugin defaults.
      let envLow: SectionSetting<unknown> | undefined;
      candidates.push(() => {
        const e = envValue(row, env);
        if (!e) return undefined;
        const via = Object.entries(e.texts).map(([name, text]) => (exported[name]?.value === text ? exported[name] : undefined));
        const origin = via.every((o) => o !== undefined) ? via[0] : undefined;
        const fix = `Set ${e.variable} to ${describeRow(row)}, or unset it.`;
        if (origin) {
          const detail = origin.detail ? `${origin.detail} (via ${e.variable})` : e.variable;
          const s = take(e.raw, origin.source, detail, 'the environment', e.variable, fix);
          if (s && origin.source === 'default') {
            envLow = s;
            return undefined;
          }
          return s;
        }
        return take(e.raw, 'env', e.variable, 'the environment', e.variable, fix);
      });
      candidates.push(() => {
        if (!layers.file || !row.yaml) return undefined;
        const got = fileValue(row, layers.file.config);
        if (!got) return undefined;
        return take(got.value, 'config file', `${layers.file.path} (${got.key})`, `config file ${layers.file.path}`, got.key, `Set ${got.key} in ${layers.file.path} to ${describeRow(row)}.`);
      });
      candidates.push(() => {
        const v = (layers.pluginDefaults?.[section] as Record<string, unknown> | undefined)?.[row.key];
        if (v === undefined || v === null) return undefined;
        const who = layers.pluginName ? `${layers.pluginName}: ` : '';
        return take(v, 'plugin default', `${who}${section}.${row.key}`, 'plugin defaults', `${section}.${row.key}`, `Fix the default the ${layers.pluginName ?? 'plugin'} gives for ${section}.${row.key}.`);
      });
      let winner: SectionSetting<unknown> | undefined;
      // Every candidate is checked (a malformed value is a mistake even when a higher source wins).
      for (const c of candidates) {
        const got = c();
        winner ??= got;
      }
      winner ??= envLow;
      winner ??= layers.launcherDefaults
        ? { value: row.exportAlways ? row.default : row.flagDefault, source: 'default', detail: '' }
        : { value: row.default, source: 'default', detail: '' };
      out[row.key] = Object.freeze(winner);
    }
    sections[section] = Object.freeze(out);
  }
  return { sections: Object.freeze(sections) as unknown as ResolvedSections, problems };
}

/** What a row accepts, in words (for messages). */
export function describeRow(row: SettingRow): string {
  switch (row.type) {
    case 'boolean':
      return 'true or false';
    case 'integer':
    case 'number':
      return row.enum ? `one of ${row.enum.join(', ')}` : row.type === 'integer' ? 'a whole number' : 'a number';
    case 'boolean[]':
      return 'three booleans like true,false,false';
    case 'string':
      return row.enum ? `one of ${row.enum.join(', ')}` : 'a string';
    default:
      return 'a valid value';
  }
}

/** The plain values of one resolved section. */
export function sectionValues<S extends SettingSectionName>(section: ResolvedSection<S>): SectionValues<S> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(section as Record<string, SectionSetting<unknown>>)) out[k] = s.value;
  return out as SectionValues<S>;
}

/**
 * The variables the launcher exports for one section: every row with a
 * variable whose value is set (or that exports its default), as text, with
 * the value's origin.
 */
export function exportSection(
  section: SettingSectionName,
  resolved: ResolvedSection<SettingSectionName>,
): { name: string; value: string; origin: SectionSetting<unknown> }[] {
  const settings = resolved as Record<string, SectionSetting<unknown>>;
  const values = Object.fromEntries(Object.entries(settings).map(([k, s]) => [k, s.value]));
  const out: { name: string; value: string; origin: SectionSetting<unknown> }[] = [];
  for (const row of settingRows(section)) {
    if (row.sharedFlag) continue;
    const s = settings[row.key];
    if (s === undefined || s.value === undefined) continue;
    if (row.exportWhen && !row.exportWhen(values)) continue;
    for (const [name, value] of Object.entries(row.toEnv(s.value))) out.push({ name, value, origin: s });
  }
  return out;
}
