/**
 * FSDP configuration: what a user writes (the `fsdp_config:` section of
 * `default_config.yaml`, `FSDP_*` variables, `--fsdp_*` launch flags, the
 * options passed to `fsdp({...})` in code) resolved into one validated
 * {@link FsdpPlan}, with Accelerate's `FullyShardedDataParallelPlugin` rules
 * (strategy names and numbers, FSDP1 vs FSDP2, state-dict types, wrap
 * policies, mixed precision, ignored modules) and the checks that need the
 * world size (one process, hybrid shard groups).
 *
 * Every error names the field as the user wrote it — `fsdp_config.fsdp_sharding_strategy`
 * in the file, `FSDP_SHARDING_STRATEGY` in the environment, `--fsdp_sharding_strategy`
 * on the command line, `shardingStrategy` in code — with its value and the fix.
 * @module
 */
import type { DType, FsdpSettings, ResolvedSection, SectionSetting, SectionSource } from '@accelerate/core';
import { SETTINGS, type SettingRow } from '@accelerate/core/internal';

// ---- public types ---------------------------------------------------------------

/** FSDP sharding strategies; the numbers 1..5 stand for them in this order. */
export type ShardingStrategy = 'FULL_SHARD' | 'SHARD_GRAD_OP' | 'NO_SHARD' | 'HYBRID_SHARD' | 'HYBRID_SHARD_ZERO2';
/** FSDP1 backward prefetch policies (`NO_PREFETCH` = none). */
export type BackwardPrefetch = 'BACKWARD_PRE' | 'BACKWARD_POST' | 'NO_PREFETCH';
/** FSDP state-dict types (`LOCAL_STATE_DICT` is refused: see {@link resolveFsdpPlan}). */
export type StateDictType = 'FULL_STATE_DICT' | 'SHARDED_STATE_DICT' | 'LOCAL_STATE_DICT';

/** What a function auto-wrap policy is called with, once per module. */
export interface WrapPolicyInfo {
  /** Dotted module path (`encoder.layers.0`), `''` for the root. */
  name: string;
  /** The module's class name (`TransformerEncoderLayer`). */
  className: string;
  /** Elements of the parameters of the module's subtree not yet in a nested unit (ignored ones excluded). */
  numParams: number;
  /** Depth in the module tree (root 0). */
  depth: number;
}

/** A custom auto-wrap policy: return true to make the module an FSDP unit. */
export type WrapPolicyFunction = (info: WrapPolicyInfo) => boolean;

/** A mixed-precision policy given as a dict (torch's `MixedPrecision` fields; dtype names as torch spells them). */
export interface MixedPrecisionPolicyDict {
  /** Dtype the parameters are all-gathered and computed in (`bf16`, `bfloat16`, `torch.bfloat16`, …). */
  paramDtype?: string;
  /** Dtype gradients are reduced in (default: the param dtype). */
  reduceDtype?: string;
  /** Dtype of buffers (default float32). */
  bufferDtype?: string;
  /** FSDP2: dtype the forward's outputs are cast to. */
  outputDtype?: string;
}

/**
 * What a user passes to `fsdp({...})`: the camelCase of Accelerate's
 * `FullyShardedDataParallelPlugin` fields; every field optional. Values given
 * here win over the config file, environment and launch flags.
 */
export interface FsdpOptions {
  /** 1 (flat-parameter FSDP, default) or 2 (per-parameter `fully_shard`). */
  fsdpVersion?: 1 | 2;
  /** Strategy by name or number (1 FULL_SHARD … 5 HYBRID_SHARD_ZERO2). FSDP2 derives it from {@link reshardAfterForward}. */
  shardingStrategy?: ShardingStrategy | 1 | 2 | 3 | 4 | 5;
  /** FSDP2: a boolean (default true = FULL_SHARD, false = SHARD_GRAD_OP); FSDP1: a strategy name. */
  reshardAfterForward?: boolean | ShardingStrategy;
  /** FSDP1 only; FSDP2 refuses any value other than null / NO_PREFETCH. */
  backwardPrefetch?: BackwardPrefetch | null;
  /** FSDP1 only; FSDP2 refuses true. */
  forwardPrefetch?: boolean;
  /** Which modules become FSDP units (default NO_WRAP: the root only). */
  autoWrapPolicy?:
    | 'TRANSFORMER_BASED_WRAP'
    | 'SIZE_BASED_WRAP'
    | 'NO_WRAP'
    | { transformerLayerClasses: string[] }
    | { minNumParams: number }
    | WrapPolicyFunction;
  /** Class names wrapped by TRANSFORMER_BASED_WRAP (list or comma-separated). */
  transformerLayerClsToWrap?: string[] | string;
  /** SIZE_BASED_WRAP threshold; 0 wraps nothing by size. */
  minNumParams?: number;
  /** Keep parameters and gradients on the CPU between uses (`fsdp_offload_params`). */
  cpuOffload?: boolean;
  /** Recompute activations of each unit in backward. */
  activationCheckpointing?: boolean;
  /** `fp16` / `bf16` (all three dtypes), `fp32` (none), a dict; `fp8` is refused. */
  mixedPrecisionPolicy?: 'fp16' | 'bf16' | 'fp32' | 'fp8' | MixedPrecisionPolicyDict;
  /** Default FULL_STATE_DICT (FSDP1) / SHARDED_STATE_DICT (FSDP2). */
  stateDictType?: StateDictType;
  /** Broadcast rank 0's parameters and buffers at wrap time. */
  syncModuleStates?: boolean;
  /** Only rank 0 loads weights; the others receive them (needs syncModuleStates). */
  cpuRamEfficientLoading?: boolean;
  /** Modules left out of sharding: exact names, or a regular expression matched against the whole dotted name. */
  ignoredModules?: string[] | RegExp | string;
  /** FSDP1: rate-limit all-gathers (default true). */
  limitAllGathers?: boolean;
  /** FSDP1 only (FSDP2 always uses the original parameters). */
  useOrigParams?: boolean;
  /** HYBRID_SHARD: ranks per shard group (default: the processes of one machine, LOCAL_WORLD_SIZE; or parallelism_config dp_shard_size). */
  shardGroupSize?: number;
}

/** The resolved auto-wrap policy. */
export type AutoWrapPlan =
  | { kind: 'none' }
  | { kind: 'transformer'; classes: string[] }
  | { kind: 'size'; minNumParams: number }
  | { kind: 'function'; fn: WrapPolicyFunction };

/** The resolved mixed-precision policy. */
export interface MixedPrecisionPlan {
  paramDtype: DType;
  reduceDtype: DType;
  bufferDtype: DType;
  /** FSDP2's `output_dtype`, when given. */
  outputDtype?: DType;
}

/** FSDP settings resolved and validated (see {@link resolveFsdpPlan}). */
export interface FsdpPlan {
  version: 1 | 2;
  /** FSDP2: reshardAfterForward true -> FULL_SHARD, false -> SHARD_GRAD_OP; hybrid through shardGroupSize / parallelism. */
  shardingStrategy: ShardingStrategy;
  /** FULL_SHARD / HYBRID_SHARD true; SHARD_GRAD_OP / HYBRID_SHARD_ZERO2 / NO_SHARD false. */
  reshardAfterForward: boolean;
  /** Ranks a parameter is sharded over: the world for FULL_SHARD / SHARD_GRAD_OP, 1 for NO_SHARD, the shard group for hybrids. */
  shardGroupSize: number;
  /** world / shardGroupSize. */
  replicaGroupCount: number;
  backwardPrefetch: BackwardPrefetch;
  forwardPrefetch: boolean;
  autoWrap: AutoWrapPlan;
  cpuOffload: boolean;
  activationCheckpointing: boolean;
  /** undefined = parameters stay in their dtype. */
  mixedPrecision: MixedPrecisionPlan | undefined;
  stateDictType: 'FULL_STATE_DICT' | 'SHARDED_STATE_DICT';
  syncModuleStates: boolean;
  cpuRamEfficientLoading: boolean;
  /** Whether the module at this dotted path (and so its subtree) is left out of sharding. */
  isIgnored: (moduleName: string) => boolean;
  limitAllGathers: boolean;
  /** Things the user should know (a setting forced or ignored); log them once. */
  warnings: string[];
}

/**
 * The FSDP settings section as a plugin's context gives it
 * (`ctx.resolvedConfig.section('fsdp')`): each value with its source. Keys
 * left out count as defaults.
 */
export type FsdpSection = Partial<ResolvedSection<'fsdp'>>;

/** Inputs of {@link resolveFsdpPlan}. */
export interface ResolveFsdpPlanInput {
  /** The `fsdp` settings section with sources (`ctx.resolvedConfig.section('fsdp')`). */
  section?: FsdpSection;
  /** Options given in code (`fsdp({...})`); they win over the section. */
  user?: FsdpOptions;
  /** World size. */
  numProcesses: number;
  /** Processes on this machine (LOCAL_WORLD_SIZE): the default HYBRID_SHARD shard group. */
  localWorldSize?: number;
  /** `parallelism_config` dp_shard_size, when a parallelism config is in use: the shard group (hybrid when below the world). */
  dpShardSize?: number;
  /**
   * The Accelerator's mixed precision (`no | fp16 | bf16 | fp8`): with fp16 / bf16
   * and no `mixedPrecisionPolicy`, parameters, reductions and buffers use that
   * dtype (Accelerate's `set_mixed_precision`). fp8 sets no FSDP policy.
   */
  mixedPrecision?: string;
}

/** Invalid FSDP settings: every problem found, each naming the field, the value and the fix. */
export class FsdpConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(
      problems.length === 1
        ? `FSDP: ${problems[0]}`
        : `FSDP settings have ${problems.length} problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.name = 'FsdpConfigError';
  }
}

// ---- constants ------------------------------------------------------------------

/** Sharding strategies in number order (FULL_SHARD = 1 … HYBRID_SHARD_ZERO2 = 5). */
export const SHARDING_STRATEGIES: readonly ShardingStrategy[] = ['FULL_SHARD', 'SHARD_GRAD_OP', 'NO_SHARD', 'HYBRID_SHARD', 'HYBRID_SHARD_ZERO2'];

/** Whether a strategy frees the gathered parameters after forward (FULL_SHARD, HYBRID_SHARD). */
export function reshardsAfterForward(strategy: ShardingStrategy): boolean {
  return strategy === 'FULL_SHARD' || strategy === 'HYBRID_SHARD';
}

const isHybrid = (s: ShardingStrategy) => s === 'HYBRID_SHARD' || s === 'HYBRID_SHARD_ZERO2';

/** Dtype names as torch and Accelerate spell them -> core dtypes. */
const DTYPE_ALIASES: Readonly<Record<string, DType>> = {
  fp16: 'float16',
  float16: 'float16',
  half: 'float16',
  bf16: 'bfloat16',
  bfloat16: 'bfloat16',
  fp32: 'float32',
  float32: 'float32',
  float: 'float32',
  fp64: 'float64',
  float64: 'float64',
  double: 'float64',
};

/**
 * A dtype name as torch or Accelerate write it (`bf16`, `bfloat16`,
 * `torch.bfloat16`, `fp32`, `float`, `half`, …) as a core {@link DType};
 * undefined for anything else (fp8 included).
 */
export function parseDtypeName(name: string): DType | undefined {
  const key = name.trim().toLowerCase().replace(/^torch\./, '');
  return DTYPE_ALIASES[key];
}

// ---- fields: a value with where it came from -------------------------------------

type RowKey = keyof FsdpSettings;
type Origin = SectionSource | 'user';

interface Field<T> {
  value: T;
  /** Set by someone (code, file, env, flag, constructor), not a default. */
  explicit: boolean;
  origin: Origin;
  /** The field as the user wrote it: `fsdp_config.fsdp_sharding_strategy`, `FSDP_SHARDING_STRATEGY`, `shardingStrategy`. */
  name: string;
  /** Where, for messages: ` (in /x/default_config.yaml)`, ` (in fsdp({...}))`, `` for defaults. */
  where: string;
  /** The value as written. */
  raw: unknown;
  rowKey: RowKey | undefined;
  userKey: keyof FsdpOptions | undefined;
}

const rows = SETTINGS.fsdp as unknown as Record<RowKey, SettingRow>;
const yamlSub = (row: SettingRow) => row.yaml!.slice(row.yaml!.indexOf('.') + 1);

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof RegExp) return String(v);
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** The field name and place from a section value's source and detail. */
function sectionName(row: SettingRow, s: SectionSetting<unknown>): { name: string; where: string } {
  const detail = s.detail.replace(/ \(via [^()]*\)$/, '');
  switch (s.source) {
    case 'config file': {
      const m = /^(.*) \(([^()]+)\)$/.exec(detail);
      return m ? { name: m[2], where: ` (in ${m[1]})` } : { name: row.yaml!, where: ` (in the config file ${detail})` };
    }
    case 'env':
      return { name: detail || row.env || row.key, where: ' (environment)' };
    case 'launch flag':
      return { name: detail || `--${row.flag}`, where: ' (accelerate launch)' };
    case 'constructor':
      return { name: `fsdp.${row.key}`, where: ' (Accelerator constructor)' };
    case 'plugin default':
      return { name: `fsdp.${row.key}`, where: detail ? ` (plugin default: ${detail})` : ' (plugin default)' };
    default:
      return { name: yamlSub(row), where: ' (default)' };
  }
}

function userField<K extends keyof FsdpOptions>(key: K, value: unknown, rowKey?: RowKey): Field<unknown> {
  return { value, explicit: true, origin: 'user', name: key, where: ' (in fsdp({...}))', raw: value, rowKey, userKey: key };
}

/** `name=value (where)`, the way every message starts. */
function said(f: Field<unknown>): string {
  return `${f.name}=${show(f.raw)}${f.where}`;
}

/**
 * How to set the field to `value` at the place it came from (defaults: in the
 * config file, or in code).
 */
function howToSet(f: Field<unknown>, value: string | boolean | number): string {
  const row = f.rowKey ? rows[f.rowKey] : undefined;
  const code = `${f.userKey ?? row?.key}: ${typeof value === 'string' ? `'${value}'` : String(value)}`;
  switch (f.origin) {
    case 'user':
      return `pass ${code} to fsdp({...})`;
    case 'config file':
      return `set ${f.name.split('.').pop()}: ${String(value)}${f.where.replace(/^ \(in (.*)\)$/, ' in $1')}`;
    case 'env':
      return `set ${f.name}=${String(value)}`;
    case 'launch flag':
      return `pass ${f.name.split(' ')[0]} ${String(value)}`;
    case 'constructor':
      return `pass fsdp: { ${code} } to the Accelerator`;
    default:
      return row?.yaml ? `set ${yamlSub(row)}: ${String(value)} in the config file or pass ${code} to fsdp({...})` : `pass ${code} to fsdp({...})`;
  }
}

/** How to remove a field's setting at the place it came from. */
function howToUnset(f: Field<unknown>): string {
  switch (f.origin) {
    case 'user':
      return `remove ${f.name} from fsdp({...})`;
    case 'config file':
      return `remove ${f.name.split('.').pop()}${f.where.replace(/^ \(in (.*)\)$/, ' from $1')}`;
    case 'env':
      return `unset ${f.name}`;
    case 'launch flag':
      return `drop ${f.name.split(' ')[0]}`;
    case 'constructor':
      return `remove fsdp.${f.rowKey} from the Accelerator's options`;
    default:
      return `remove ${f.name}`;
  }
}

// ---- resolution ------------------------------------------------------------------

/**
 * Resolves and validates the FSDP settings: the section (config file, env,
 * launch flags, constructor, each with its source) under the options given
 * in code, against the world size.
 *
 * Rules (Accelerate's `FullyShardedDataParallelPlugin`, spec §6, behaviours 62–63):
 * - `shardingStrategy` by name (any case) or number: FULL_SHARD=1,
 *   SHARD_GRAD_OP=2, NO_SHARD=3, HYBRID_SHARD=4, HYBRID_SHARD_ZERO2=5.
 * - FSDP1: the strategy is `shardingStrategy`, else a strategy name in
 *   `reshardAfterForward`, else FULL_SHARD; a boolean `reshardAfterForward` is
 *   refused. FSDP2: `reshardAfterForward` is a boolean (default true:
 *   FULL_SHARD, false: SHARD_GRAD_OP); an explicit `shardingStrategy` is still
 *   honoured; a shard group below the world (`shardGroupSize`, or
 *   `dpShardSize`) makes it hybrid. `backwardPrefetch` must be unset,
 *   `forwardPrefetch` true and `LOCAL_STATE_DICT` are errors.
 * - State dict: FULL_STATE_DICT (FSDP1) / SHARDED_STATE_DICT (FSDP2) by
 *   default; LOCAL_STATE_DICT is refused (FSDP2 has none; this port saves
 *   sharded or full state dicts only).
 * - `cpuRamEfficientLoading` needs `syncModuleStates`: set explicitly with
 *   `syncModuleStates` false it forces it true with a warning (Accelerate's
 *   plugin); as a mere default it gives way to an explicit false.
 *   (`accelerate launch` refuses the explicit combination before spawning.)
 * - SIZE_BASED_WRAP with `minNumParams` 0 wraps nothing by size (`kind: 'none'`);
 *   TRANSFORMER_BASED_WRAP takes the class names (checked against the model by
 *   `planUnits`).
 * - Mixed precision: `fp16` / `bf16` -> that dtype for parameters, reductions
 *   and buffers; `fp32` none; a dict of torch dtype names; `fp8` refused.
 * - `ignoredModules`: a list of dotted module names, or a regular expression
 *   that must match the whole name.
 * - World: a strategy other than NO_SHARD needs 2+ processes; a hybrid
 *   strategy needs a shard group size that divides the world, above 1 and
 *   below the world.
 *
 * Collects every problem and throws one {@link FsdpConfigError} listing them.
 */
export function resolveFsdpPlan(input: ResolveFsdpPlanInput): FsdpPlan {
  const section = (input.section ?? {}) as Record<string, SectionSetting<unknown> | undefined>;
  const user = (input.user ?? {}) as Record<string, unknown>;
  const problems: string[] = [];
  const warnings: string[] = [];
  const world = input.numProcesses;
  if (!Number.isInteger(world) || world < 1) {
    throw new FsdpConfigError([`the world size is ${show(world)}; it must be a whole number of processes, 1 or more.`]);
  }

  /** The field from code if given, else the section (parsed by its row). */
  const field = <T>(userKey: keyof FsdpOptions, rowKey: RowKey | undefined, parse?: (raw: unknown) => { ok: true; value: T } | { ok: false; expected: string }): Field<T> => {
    const row = rowKey ? rows[rowKey] : undefined;
    const u = user[userKey];
    if (u !== undefined) {
      const f = userField(userKey, u, rowKey);
      const p = parse ?? (row ? (raw: unknown) => row.parse(raw) : undefined);
      if (p && u !== null) {
        const r = p(u);
        if (!r.ok) {
          problems.push(`${said(f)} is not ${r.expected}; correct it or leave ${String(userKey)} out.`);
          return { ...f, value: undefined as T, explicit: false };
        }
        f.value = r.value;
      }
      return f as Field<T>;
    }
    const s = rowKey ? section[rowKey] : undefined;
    if (row && s && s.value !== undefined) {
      const { name, where } = sectionName(row, s);
      return { value: s.value as T, explicit: s.source !== 'default', origin: s.source, name, where, raw: s.value, rowKey, userKey };
    }
    const value = (row?.default as T) ?? (undefined as T);
    return { value, explicit: false, origin: 'default', name: row ? yamlSub(row) : userKey, where: ' (default)', raw: value, rowKey, userKey };
  };

  // -- version
  const versionF = field<1 | 2>('fsdpVersion', 'version');
  const version: 1 | 2 = versionF.value === 2 ? 2 : 1;

  // -- strategy
  const ssF = field<ShardingStrategy | undefined>('shardingStrategy', 'shardingStrategy');
  const rafF = field<boolean | ShardingStrategy | undefined>('reshardAfterForward', 'reshardAfterForward');
  let strategy: ShardingStrategy = 'FULL_SHARD';
  /** The field that chose the strategy (for messages); undefined = the default. */
  let strategyF: Field<unknown> | undefined;
  if (version === 1) {
    if (rafF.explicit && typeof rafF.value === 'boolean') {
      problems.push(
        `${said(rafF)} is a boolean, which FSDP version 1 does not take (FSDP1 reads a strategy name there). ` +
          `${capital(howToSet(rafF, rafF.value ? 'FULL_SHARD' : 'SHARD_GRAD_OP'))}, or use FSDP2 (${howToSet(versionF, 2)}).`,
      );
    }
    if (ssF.explicit && ssF.value) {
      strategy = ssF.value;
      strategyF = ssF;
      if (rafF.explicit && typeof rafF.value === 'string' && rafF.value !== ssF.value) {
        problems.push(`${said(ssF)} and ${said(rafF)} name different strategies; ${howToUnset(rafF)}, or make both ${ssF.value}.`);
      }
    } else if (rafF.explicit && typeof rafF.value === 'string') {
      strategy = rafF.value;
      strategyF = rafF;
    }
  } else {
    if (rafF.explicit && typeof rafF.value === 'string') {
      problems.push(
        `${said(rafF)} is a strategy name, but FSDP version 2 takes a boolean there: true (reshard after forward, as FULL_SHARD) or false (as SHARD_GRAD_OP). ` +
          `${capital(howToSet(rafF, reshardsAfterForward(rafF.value)))}.`,
      );
    }
    const reshard = typeof rafF.value === 'boolean' ? rafF.value : true;
    if (ssF.explicit && ssF.value) {
      strategy = ssF.value;
      strategyF = ssF;
      if (rafF.explicit && typeof rafF.value === 'boolean' && rafF.value !== reshardsAfterForward(ssF.value)) {
        problems.push(
          `${said(ssF)} ${reshardsAfterForward(ssF.value) ? 'reshards' : 'keeps parameters gathered'} after forward but ${said(rafF)} says the opposite; ` +
            `with FSDP2 ${howToUnset(ssF)} and keep ${rafF.name}.`,
        );
      }
    } else {
      strategy = reshard ? 'FULL_SHARD' : 'SHARD_GRAD_OP';
      if (rafF.explicit) strategyF = rafF;
    }
  }

  // -- shard group
  let groupF: Field<unknown> | undefined;
  if (user.shardGroupSize !== undefined) groupF = userField('shardGroupSize', user.shardGroupSize);
  else if (input.dpShardSize !== undefined && input.dpShardSize > 1) {
    groupF = { value: input.dpShardSize, explicit: true, origin: 'config file', name: 'parallelism_config.parallelism_config_dp_shard_size', where: '', raw: input.dpShardSize, rowKey: undefined, userKey: undefined };
  }
  let groupReq: number | undefined;
  if (groupF) {
    const g = groupF.value;
    if (typeof g !== 'number' || !Number.isInteger(g) || g < 1 || g > world) {
      problems.push(`${said(groupF)} must be a whole number of ranks from 1 to the world size ${world}; pass a divisor of ${world}.`);
    } else groupReq = g;
  }
  const strategyExplicit = strategyF !== undefined && strategyF === ssF;
  // A shard group below the world makes an implicit FULL_SHARD / SHARD_GRAD_OP hybrid (FSDP2's 2-D mesh; FSDP1 likewise).
  if (!strategyExplicit && groupReq !== undefined && groupReq > 1 && groupReq < world && (strategy === 'FULL_SHARD' || strategy === 'SHARD_GRAD_OP')) {
    strategy = strategy === 'FULL_SHARD' ? 'HYBRID_SHARD' : 'HYBRID_SHARD_ZERO2';
  }
  const strategyText = strategyF ? said(strategyF) : `the sharding strategy ${strategy} (the default${version === 2 ? ': fsdp_reshard_after_forward true' : ''})`;
  let shardGroupSize = world;
  if (strategy === 'NO_SHARD') {
    shardGroupSize = 1;
    if (groupReq !== undefined && groupReq !== 1) {
      problems.push(`${strategyText} shards nothing, but ${said(groupF!)} asks for shard groups of ${groupReq}; drop one of them.`);
    }
  } else if (world === 1) {
    problems.push(
      `${strategyText} shards parameters across processes, but this run has 1 process. ` +
        `Launch several (\`accelerate launch --num_processes 2 train.ts\`), or use NO_SHARD (${howToSet(ssF, 'NO_SHARD')}).`,
    );
  } else if (isHybrid(strategy)) {
    let size: number;
    let sizeText: string;
    if (groupReq !== undefined) {
      size = groupReq;
      sizeText = said(groupF!);
    } else {
      size = input.localWorldSize ?? world;
      sizeText = `the default shard group, the ${size} processes of one machine (LOCAL_WORLD_SIZE)`;
    }
    const fix = `pass shardGroupSize (a divisor of ${world} between 2 and ${world / 2}) to fsdp({...}) or set parallelism_config_dp_shard_size, or use FULL_SHARD`;
    if (size <= 1 || size >= world) {
      problems.push(
        `${strategyText} shards within groups and replicates across them, but ${sizeText} and the world size is ${world}: ` +
          `${size <= 1 ? 'groups of 1 shard nothing' : 'one group of the whole world replicates nothing'}. To shard hybrid, ${fix}.`,
      );
    } else if (world % size !== 0) {
      problems.push(`${strategyText}: the world size ${world} is not divisible by ${sizeText}. ${capital(fix)}.`);
    } else shardGroupSize = size;
  } else if (groupReq !== undefined && groupReq !== world && strategyExplicit) {
    problems.push(
      `${strategyText} shards over all ${world} ranks, but ${said(groupF!)} asks for shard groups of ${groupReq}; ` +
        `for sharding within groups and replicating across them use ${strategy === 'FULL_SHARD' ? 'HYBRID_SHARD' : 'HYBRID_SHARD_ZERO2'}.`,
    );
  }

  // -- prefetch
  const bpF = field<BackwardPrefetch | undefined | null>('backwardPrefetch', 'backwardPrefetch');
  let backwardPrefetch: BackwardPrefetch = bpF.value ?? 'NO_PREFETCH';
  if (version === 2 && backwardPrefetch !== 'NO_PREFETCH') {
    problems.push(
      `${said(bpF)}: FSDP version 2 has no backward prefetch setting (it prefetches the next unit's all-gather itself). ${capital(howToUnset(bpF))}.`,
    );
    backwardPrefetch = 'NO_PREFETCH';
  }
  const fpF = field<boolean>('forwardPrefetch', 'forwardPrefetch');
  let forwardPrefetch = fpF.value === true;
  if (version === 2 && forwardPrefetch) {
    if (fpF.explicit) {
      problems.push(
        `${said(fpF)}: forward prefetch is not implemented in FSDP version 2. ${capital(howToUnset(fpF))} (reshardAfterForward false keeps parameters gathered instead).`,
      );
    }
    forwardPrefetch = false;
  }

  // -- auto wrap
  const autoWrap = resolveAutoWrap(field, user, problems, warnings);

  // -- offload, checkpointing
  const cpuOffload = field<boolean>('cpuOffload', 'offloadParams').value === true;
  const activationCheckpointing = field<boolean>('activationCheckpointing', 'activationCheckpointing').value === true;

  // -- mixed precision
  const mixedPrecision = resolveMixedPrecision(user.mixedPrecisionPolicy, input.mixedPrecision, problems);

  // -- state dict
  const sdF = field<StateDictType | undefined>('stateDictType', 'stateDictType');
  let stateDictType: FsdpPlan['stateDictType'] = version === 1 ? 'FULL_STATE_DICT' : 'SHARDED_STATE_DICT';
  if (sdF.value === 'LOCAL_STATE_DICT') {
    problems.push(
      version === 2
        ? `${said(sdF)}: FSDP version 2 does not support LOCAL_STATE_DICT. ${capital(howToSet(sdF, 'SHARDED_STATE_DICT'))} (each rank saves its shards) or FULL_STATE_DICT.`
        : `${said(sdF)}: LOCAL_STATE_DICT (flat-parameter shards) is not supported by accelerate-ts. ${capital(howToSet(sdF, 'SHARDED_STATE_DICT'))} (each rank saves its shards) or FULL_STATE_DICT.`,
    );
  } else if (sdF.value) stateDictType = sdF.value;

  // -- RAM-efficient loading needs module-state sync
  const creF = field<boolean>('cpuRamEfficientLoading', 'cpuRamEfficientLoading');
  const syncF = field<boolean>('syncModuleStates', 'syncModuleStates');
  let cpuRamEfficientLoading = creF.value === true;
  let syncModuleStates = syncF.value === true;
  if (cpuRamEfficientLoading && !syncModuleStates) {
    if (creF.explicit) {
      warnings.push(
        `${said(creF)} needs module states synchronised from rank 0 (the other ranks start empty), so ${said(syncF)} is overridden to true. ${capital(howToSet(syncF, true))} to silence this.`,
      );
      syncModuleStates = true;
    } else {
      cpuRamEfficientLoading = false; // a default gives way to the explicit syncModuleStates false
    }
  }

  // -- ignored modules
  const isIgnored = resolveIgnored(field, problems);

  const useOrig = field<boolean>('useOrigParams', 'useOrigParams');
  if (version === 2 && useOrig.origin === 'user') warnings.push(`${said(useOrig)} is ignored: FSDP version 2 always uses the original parameters.`);

  const limit = user.limitAllGathers;
  if (limit !== undefined && typeof limit !== 'boolean') problems.push(`limitAllGathers=${show(limit)} (in fsdp({...})) is not true or false.`);

  if (problems.length > 0) throw new FsdpConfigError(problems);
  return {
    version,
    shardingStrategy: strategy,
    reshardAfterForward: reshardsAfterForward(strategy),
    shardGroupSize,
    replicaGroupCount: world / shardGroupSize,
    backwardPrefetch,
    forwardPrefetch,
    autoWrap,
    cpuOffload,
    activationCheckpointing,
    mixedPrecision,
    stateDictType,
    syncModuleStates,
    cpuRamEfficientLoading,
    isIgnored,
    limitAllGathers: limit !== false,
    warnings,
  };
}

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

type FieldFn = <T>(userKey: keyof FsdpOptions, rowKey: RowKey | undefined, parse?: (raw: unknown) => { ok: true; value: T } | { ok: false; expected: string }) => Field<T>;

const POLICY_NAMES = ['TRANSFORMER_BASED_WRAP', 'SIZE_BASED_WRAP', 'NO_WRAP'] as const;

function splitClasses(v: unknown): string[] | undefined {
  if (Array.isArray(v)) return v.map((s) => String(s).trim()).filter((s) => s !== '');
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  return undefined;
}

function resolveAutoWrap(field: FieldFn, user: Record<string, unknown>, problems: string[], warnings: string[]): AutoWrapPlan {
  const u = user.autoWrapPolicy;
  const clsF = field<string[] | undefined>('transformerLayerClsToWrap', 'transformerLayerClsToWrap', (raw) => {
    const list = splitClasses(raw);
    return list ? { ok: true, value: list } : { ok: false, expected: 'a list of class names or a comma-separated string' };
  });
  const classes = clsF.origin === 'user' ? clsF.value : splitClasses(clsF.value);
  const sizeF = field<number>('minNumParams', 'minNumParams');
  const sizePlan = (n: unknown, f: Field<unknown>): AutoWrapPlan => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
      problems.push(`${said(f)} must be a whole number of parameters, 0 or more (0 wraps nothing by size).`);
      return { kind: 'none' };
    }
    return n === 0 ? { kind: 'none' } : { kind: 'size', minNumParams: n };
  };
  if (typeof u === 'function') return { kind: 'function', fn: u as WrapPolicyFunction };
  if (u !== null && typeof u === 'object') {
    const f = { ...(field('autoWrapPolicy', undefined) as Field<unknown>), raw: u };
    if ('transformerLayerClasses' in u) {
      const list = splitClasses((u as { transformerLayerClasses: unknown }).transformerLayerClasses);
      if (!list) {
        problems.push(`${said(f)}: transformerLayerClasses must be a list of class names.`);
        return { kind: 'none' };
      }
      return { kind: 'transformer', classes: list };
    }
    if ('minNumParams' in u) return sizePlan((u as { minNumParams: unknown }).minNumParams, f);
    problems.push(`${said(f)} is not a policy: pass 'TRANSFORMER_BASED_WRAP', 'SIZE_BASED_WRAP', 'NO_WRAP', { transformerLayerClasses: [...] }, { minNumParams: n } or a function.`);
    return { kind: 'none' };
  }
  const policyF = field<(typeof POLICY_NAMES)[number] | undefined>('autoWrapPolicy', 'autoWrapPolicy');
  const policy = policyF.value ?? 'NO_WRAP';
  if (policy === 'TRANSFORMER_BASED_WRAP') return { kind: 'transformer', classes: classes ?? [] };
  if (classes && classes.length > 0 && clsF.explicit) {
    warnings.push(
      `${said(clsF)} is ignored: the auto wrap policy is ${policy}${policyF.explicit ? ` (${said(policyF)})` : ' (the default)'}. Set it to TRANSFORMER_BASED_WRAP to wrap those classes.`,
    );
  }
  if (policy === 'SIZE_BASED_WRAP') return sizePlan(sizeF.value, sizeF as Field<unknown>);
  return { kind: 'none' };
}

function resolveMixedPrecision(policy: unknown, accelerator: string | undefined, problems: string[]): MixedPrecisionPlan | undefined {
  const name = 'mixedPrecisionPolicy';
  const all = (d: DType): MixedPrecisionPlan => ({ paramDtype: d, reduceDtype: d, bufferDtype: d });
  if (policy === undefined || policy === null) {
    const mp = accelerator?.toLowerCase();
    if (mp === 'fp16') return all('float16');
    if (mp === 'bf16') return all('bfloat16');
    return undefined;
  }
  if (typeof policy === 'string') {
    const p = policy.trim().toLowerCase();
    if (p === 'fp8') {
      problems.push(
        `${name}="fp8" (in fsdp({...})): FP8 is not supported as an FSDP mixed-precision policy here (no float8 all-gather). Use 'bf16' or 'fp16', or leave it out.`,
      );
      return undefined;
    }
    if (p === 'fp32' || p === 'no') return undefined;
    const d = parseDtypeName(p);
    if (d === 'float16' || d === 'bfloat16') return all(d);
    problems.push(`${name}=${show(policy)} (in fsdp({...})) is not a policy: pass 'fp16', 'bf16', 'fp32' or { paramDtype, reduceDtype, bufferDtype }.`);
    return undefined;
  }
  if (typeof policy === 'object') {
    const dict = policy as Record<string, unknown>;
    const get = (camel: string, snake: string) => dict[camel] ?? dict[snake];
    const known = new Set(['paramDtype', 'param_dtype', 'reduceDtype', 'reduce_dtype', 'bufferDtype', 'buffer_dtype', 'outputDtype', 'output_dtype']);
    for (const k of Object.keys(dict)) {
      if (!known.has(k)) problems.push(`${name}.${k} (in fsdp({...})) is not a mixed-precision field: use paramDtype, reduceDtype, bufferDtype or outputDtype.`);
    }
    const dtype = (camel: string, snake: string): DType | undefined => {
      const v = get(camel, snake);
      if (v === undefined || v === null) return undefined;
      const d = typeof v === 'string' ? parseDtypeName(v) : undefined;
      if (!d) {
        problems.push(
          `${name}.${camel}=${show(v)} (in fsdp({...})) is not a floating-point dtype: use 'bf16' / 'bfloat16' / 'torch.bfloat16', 'fp16' / 'float16', or 'fp32' / 'float32'${typeof v === 'string' && /fp8|float8/i.test(v) ? ' (FP8 is not supported here)' : ''}.`,
        );
      }
      return d;
    };
    const param = dtype('paramDtype', 'param_dtype');
    const reduce = dtype('reduceDtype', 'reduce_dtype');
    const buffer = dtype('bufferDtype', 'buffer_dtype');
    const output = dtype('outputDtype', 'output_dtype');
    const plan: MixedPrecisionPlan = {
      paramDtype: param ?? 'float32',
      // torch: without reduce_dtype, gradients are reduced in the parameters' dtype.
      reduceDtype: reduce ?? param ?? 'float32',
      bufferDtype: buffer ?? 'float32',
    };
    if (output) plan.outputDtype = output;
    return plan;
  }
  problems.push(`${name}=${show(policy)} (in fsdp({...})) is not a policy: pass 'fp16', 'bf16', 'fp32' or { paramDtype, reduceDtype, bufferDtype }.`);
  return undefined;
}

function resolveIgnored(field: FieldFn, problems: string[]): (name: string) => boolean {
  const f = field<unknown>('ignoredModules', 'ignoredModules', (raw) => ({ ok: true, value: raw }));
  const v = f.value;
  if (v === undefined || v === null || v === '') return () => false;
  if (Array.isArray(v)) {
    if (!v.every((s) => typeof s === 'string')) {
      problems.push(`${said(f)} must be module names (strings) or one regular expression.`);
      return () => false;
    }
    const names = new Set(v as string[]);
    return (name) => names.has(name);
  }
  let re: RegExp;
  try {
    if (v instanceof RegExp) re = new RegExp(`^(?:${v.source})$`, v.flags.replace(/[gy]/g, ''));
    else if (typeof v === 'string') re = new RegExp(`^(?:${v})$`);
    else throw new Error('not a string');
  } catch (e) {
    problems.push(`${said(f)} is not a valid regular expression (${(e as Error).message}); write one that matches whole module names, e.g. "encoder\\.layers\\.0" or ".*embed.*".`);
    return () => false;
  }
  return (name) => re.test(name);
}

// ---- launch-time validation ------------------------------------------------------

/** Inputs of {@link validateFsdpLaunchConfig}: what `accelerate launch` knows before spawning. */
export interface FsdpLaunchInput {
  /** The launcher's resolved `fsdp` section (`resolved.sections.fsdp`). */
  section: FsdpSection;
  /** Total processes. */
  numProcesses: number;
  /** Processes per machine. */
  localWorldSize?: number;
  /** `parallelism_config` dp_shard_size when `--use_parallelism_config` is on. */
  dpShardSize?: number;
}

/**
 * The problems a launch's FSDP settings have, checked before any rank starts
 * (the same rules the ranks apply, without code-given options): an empty list
 * when they are fine. `accelerate launch` loads this from the installed FSDP
 * plugin and refuses to start when it returns problems.
 */
export function validateFsdpLaunchConfig(input: FsdpLaunchInput): string[] {
  try {
    resolveFsdpPlan({ section: input.section, numProcesses: input.numProcesses, localWorldSize: input.localWorldSize, dpShardSize: input.dpShardSize });
    return [];
  } catch (e) {
    if (e instanceof FsdpConfigError) return [...e.problems];
    throw e;
  }
}
