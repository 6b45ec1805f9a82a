/**
 * DeepSpeed configuration exactly as Python Accelerate 1.15 resolves it
 * (`DeepSpeedPlugin.__post_init__`, `set_mixed_precision`, and the `"auto"`
 * filling of `Accelerator._prepare_deepspeed`), as pure TypeScript: no
 * DeepSpeed, no Python, no backend.
 *
 * Two steps, as in Python:
 * 1. {@link resolveDeepSpeedConfig} — when the Accelerator is built: the options
 *    given in code (`deepspeed({...})`), the `deepspeed` settings section
 *    (config file, `ACCELERATE_DEEPSPEED_*` variables, `accelerate launch`
 *    flags, each with its source) and the accelerator's mixed precision -> the
 *    DeepSpeed config dict, with `"auto"` wherever Accelerate leaves it.
 * 2. {@link fillAuto} — at `prepare`: the data loaders' batch sizes, the world,
 *    the accelerator's gradient accumulation, the model's hidden size and the
 *    optimizer/scheduler kinds fill every `"auto"`.
 *
 * Where this port deliberately differs from Python (each one also warns or is
 * stated in the message):
 * - A config file without `gradient_accumulation_steps`: Python writes 1 there,
 *   which then silently overrides the Accelerator's `gradient_accumulation_steps`
 *   at `prepare`. Here the missing key counts as `"auto"` — the Accelerator's
 *   value is used — and a warning says so (see {@link ResolveDeepSpeedConfigInput}).
 * - `gradientClipping: 0`: Python drops the key (0.0 is falsy), which DeepSpeed
 *   reads as its default 0, no clipping. Here the key is written as `0` so the
 *   config says what happens. Unset stays `"auto"` and becomes 1.0 at `prepare`,
 *   exactly as in Python (DeepSpeed under Accelerate clips at 1.0 by default).
 * - A fixed `train_batch_size` that is not micro × GA × processes is refused
 *   here, with the three numbers — before spawning when they are all known —
 *   instead of DeepSpeed's assertion inside `deepspeed.initialize`.
 * - `mixed_precision` listed in `ACCELERATE_CONFIG_DS_FIELDS` next to a
 *   DeepSpeed config file is refused only when the precision is not `no`
 *   (Python also refuses an explicit `mixed_precision: no`, which changes nothing).
 * - Every problem is collected and reported at once, naming the field as the
 *   user wrote it; Python raises the first.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { ResolvedSection, SectionSetting, SectionSource } from '@accelerate/core';

// ---- public types ---------------------------------------------------------------

/** A DeepSpeed config dict (DeepSpeed's JSON). `steps_per_print` is `Infinity`; write it with {@link toDeepSpeedJson}. */
export type DeepSpeedConfig = { [key: string]: unknown };

/** ZeRO stages. */
export type ZeroStage = 0 | 1 | 2 | 3;
/** Offload devices (ZeRO 2 and 3). */
export type OffloadDevice = 'none' | 'cpu' | 'nvme';

/**
 * What a user passes to `deepspeed({...})`: the camelCase of Accelerate's
 * `DeepSpeedPlugin` fields, all optional. Values given here win over the
 * `deepspeed` settings section (config file, environment, launch flags).
 */
export interface DeepSpeedOptions {
  /**
   * A DeepSpeed config: a path to a JSON file (relative to the working
   * directory), a JSON string, a url-safe base64 JSON string, or an object
   * (copied, never modified). With a config, the other fields only fill the
   * file's `"auto"` values. Default: `deepspeed_config_file` /
   * `ACCELERATE_DEEPSPEED_CONFIG_FILE`.
   */
  hfDsConfig?: string | DeepSpeedConfig;
  /** Default `ACCELERATE_GRADIENT_ACCUMULATION_STEPS`, else `"auto"` (the Accelerator's value at `prepare`). */
  gradientAccumulationSteps?: number | 'auto';
  /** Default `ACCELERATE_GRADIENT_CLIPPING`, else `"auto"` (1.0 at `prepare`); `0` = no clipping. */
  gradientClipping?: number | 'auto';
  /** Default `ACCELERATE_DEEPSPEED_ZERO_STAGE`, else 2. */
  zeroStage?: ZeroStage;
  /** With several data loaders: the smallest batch size is the micro-batch (default true), else the largest. */
  isTrainBatchMin?: boolean;
  /** Default `ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE`, else `none`. */
  offloadOptimizerDevice?: OffloadDevice;
  /** Default `ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE`, else `none`. */
  offloadParamDevice?: OffloadDevice;
  /** Used when the optimizer offload device is `nvme`. */
  offloadOptimizerNvmePath?: string;
  /** Used when the parameter offload device is `nvme`. */
  offloadParamNvmePath?: string;
  /** `deepspeed.zero.Init` for building huge models; default: true exactly when the stage is 3 (forced false otherwise, with a warning). */
  zero3InitFlag?: boolean;
  /** ZeRO-3: gather 16-bit weights when saving (`stage3_gather_16bit_weights_on_model_save`). Default false. */
  zero3Save16bitModel?: boolean;
  /** MoE layer class names made ZeRO-3 leaf modules (list or comma-separated). */
  transformerMoeClsNames?: string | string[];
  /** MS-AMP for fp8 (default: `ACCELERATE_FP8_BACKEND` is `MSAMP`). */
  enableMsamp?: boolean;
  /** MS-AMP level, O1 (default) or O2. */
  msampOptLevel?: 'O1' | 'O2';
}

/** The `deepspeed` settings section with sources (`ctx.resolvedConfig.section('deepspeed')`); keys left out count as defaults. */
export type DeepSpeedSection = Partial<ResolvedSection<'deepspeed'>>;

/** Inputs of {@link resolveDeepSpeedConfig}. */
export interface ResolveDeepSpeedConfigInput {
  /** Options given in code; they win over the section. */
  user?: DeepSpeedOptions;
  /** The settings section (config file / env / flags / constructor, with sources). */
  section?: DeepSpeedSection;
  /** The accelerator's mixed precision: `no` (default), `fp16`, `bf16` or `fp8`. */
  mixedPrecision?: string;
  /**
   * The DeepSpeed settings `accelerate launch` took from its config file
   * (`ACCELERATE_CONFIG_DS_FIELDS`, comma-separated or a list). With a
   * DeepSpeed config file, any of them that the file would shadow is an error.
   */
  configDsFields?: string | readonly string[];
  /** The fp8 backend (`ACCELERATE_FP8_BACKEND`): `MSAMP` turns MS-AMP on. */
  fp8Backend?: string;
  /** `ACCELERATE_FP8_OPT_LEVEL` (MS-AMP level default). */
  fp8OptLevel?: string;
  /** World size, when known: lets a fixed train_batch_size be checked now. */
  numProcesses?: number;
  /** Directory a relative config path is read from (default `process.cwd()`). */
  cwd?: string;
}

/** The resolved plugin: the DeepSpeed config and the plugin's attributes read back from it (as Python sets them). */
export interface DeepSpeedPlan {
  /** The DeepSpeed config dict, `"auto"` left where Accelerate leaves it. A fresh object. */
  config: DeepSpeedConfig;
  /** Where a config file came from (`hfDsConfig in deepspeed({...})`, `ACCELERATE_DEEPSPEED_CONFIG_FILE`, …); undefined = built from the fields. */
  configSource: string | undefined;
  zeroStage: number;
  gradientAccumulationSteps: number | 'auto';
  gradientClipping: number | 'auto' | undefined;
  offloadOptimizerDevice: string;
  offloadParamDevice: string;
  offloadOptimizerNvmePath: string;
  offloadParamNvmePath: string;
  zero3InitFlag: boolean;
  zero3Save16bitModel: boolean;
  isTrainBatchMin: boolean;
  transformerMoeClsNames: string[] | undefined;
  /** Things to log once. */
  warnings: string[];
}

/** Invalid DeepSpeed settings: every problem found, each naming the field, its value and the fix. */
export class DeepSpeedConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(
      problems.length === 1
        ? `DeepSpeed: ${problems[0]}`
        : `DeepSpeed settings have ${problems.length} problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.name = 'DeepSpeedConfigError';
  }
}

// ---- helpers ---------------------------------------------------------------------

const OFFLOAD_DEVICES: readonly string[] = ['none', 'cpu', 'nvme'];

/** Settings Accelerate ignores when a DeepSpeed config file is used (names as in `ACCELERATE_CONFIG_DS_FIELDS`). */
export const SHADOWED_BY_CONFIG_FILE: readonly string[] = [
  'gradient_accumulation_steps',
  'gradient_clipping',
  'zero_stage',
  'offload_optimizer_device',
  'offload_param_device',
  'offload_param_nvme_path',
  'offload_optimizer_nvme_path',
  'zero3_save_16bit_model',
  'mixed_precision',
];

/** Plugin attribute -> dotted DeepSpeed key (Python's `plugin_to_config_mapping`). */
const PLUGIN_TO_CONFIG: ReadonlyArray<[keyof Attrs, string]> = [
  ['gradientAccumulationSteps', 'gradient_accumulation_steps'],
  ['gradientClipping', 'gradient_clipping'],
  ['zeroStage', 'zero_optimization.stage'],
  ['offloadOptimizerDevice', 'zero_optimization.offload_optimizer.device'],
  ['offloadParamDevice', 'zero_optimization.offload_param.device'],
  ['offloadParamNvmePath', 'zero_optimization.offload_param.nvme_path'],
  ['offloadOptimizerNvmePath', 'zero_optimization.offload_optimizer.nvme_path'],
  ['zero3Save16bitModel', 'zero_optimization.stage3_gather_16bit_weights_on_model_save'],
];

interface Attrs {
  gradientAccumulationSteps: number | 'auto';
  gradientClipping: number | 'auto' | undefined;
  zeroStage: number;
  offloadOptimizerDevice: string;
  offloadParamDevice: string;
  offloadOptimizerNvmePath: string;
  offloadParamNvmePath: string;
  zero3Save16bitModel: boolean;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const isObject = (v: unknown): v is DeepSpeedConfig => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A deep copy of a JSON-like value. */
function clone<T>(v: T): T {
  if (Array.isArray(v)) return v.map(clone) as T;
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)])) as T;
  return v;
}

/** The node holding a dotted key's last part, or undefined when a parent is missing (Python's `find_config_node`). */
function findNode(config: DeepSpeedConfig, dotted: string): { node: DeepSpeedConfig | undefined; key: string } {
  const parts = dotted.split('.');
  const key = parts.pop()!;
  let node: unknown = config;
  for (const p of parts) {
    node = isObject(node) ? node[p] : undefined;
    if (node === undefined || node === null) return { node: undefined, key };
  }
  return { node: isObject(node) ? node : undefined, key };
}

/** A dotted key's value (`zero_optimization.stage`), undefined when absent. */
export function getConfigValue(config: DeepSpeedConfig, dotted: string): unknown {
  const { node, key } = findNode(config, dotted);
  return node?.[key];
}

/** Whether a dotted key is `"auto"`. */
export function isAuto(config: DeepSpeedConfig, dotted: string): boolean {
  return getConfigValue(config, dotted) === 'auto';
}

/** Writes a config as DeepSpeed/Python read it: `Infinity` stays `Infinity` (Python's json accepts it; JSON.stringify would write null). */
export function toDeepSpeedJson(config: DeepSpeedConfig, indent?: number): string {
  const INF = '\u0000Infinity\u0000';
  const text = JSON.stringify(config, (_k, v: unknown) => (v === Infinity ? INF : v === -Infinity ? `-${INF}` : v), indent);
  return text.replace(/"-?\\u0000Infinity\\u0000"/g, (m) => (m.startsWith('"-') ? '-Infinity' : 'Infinity'));
}

/** Reads a config given as a path, JSON text or url-safe base64 JSON (Python's `HfDeepSpeedConfig`). */
function loadConfig(raw: string, cwd: string): { config?: unknown; error?: string } {
  const path = resolvePath(cwd, raw);
  if (raw !== '' && existsSync(path)) {
    try {
      return { config: JSON.parse(readFileSync(path, 'utf8')) };
    } catch (e) {
      return { error: `the file ${path} is not valid JSON (${(e as Error).message})` };
    }
  }
  try {
    return { config: JSON.parse(raw) };
  } catch {
    // not JSON text: try url-safe base64, as Python does
  }
  if (/^[A-Za-z0-9_\-+/]+=*$/.test(raw)) {
    try {
      return { config: JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) };
    } catch {
      // fall through
    }
  }
  return { error: 'it is neither an existing file, nor JSON, nor base64-encoded JSON' };
}

// ---- fields ------------------------------------------------------------------------

interface Field<T> {
  value: T | undefined;
  /** The field as the user wrote it, with where: `zeroStage in deepspeed({...})`, `ACCELERATE_DEEPSPEED_ZERO_STAGE (environment)`. */
  name: string;
  origin: SectionSource | 'user' | 'unset';
}

/** `name` and place of a section value (its detail names the variable, flag or file key). */
function sectionFieldName(rowKey: string, s: SectionSetting<unknown>): string {
  const detail = s.detail.replace(/ \(via [^()]*\)$/, '');
  switch (s.source) {
    case 'config file': {
      const m = /^(.*) \(([^()]+)\)$/.exec(detail);
      return m ? `${m[2]} (in ${m[1]})` : `deepspeed_config.${rowKey} (config file ${detail})`;
    }
    case 'env':
      return `${detail || rowKey} (environment)`;
    case 'launch flag':
      return `${detail || rowKey} (accelerate launch)`;
    case 'constructor':
      return `deepspeed.${rowKey} (Accelerator constructor)`;
    case 'plugin default':
      return `deepspeed.${rowKey} (plugin default${detail ? `: ${detail}` : ''})`;
    default:
      return `deepspeed.${rowKey} (default)`;
  }
}

// ---- resolution --------------------------------------------------------------------

/**
 * Resolves the DeepSpeed config the way `DeepSpeedPlugin(...)` followed by
 * `set_mixed_precision(mixed_precision)` does in Accelerate 1.15 (spec §6,
 * behaviour 65), collecting every problem into one {@link DeepSpeedConfigError}.
 *
 * Without a config file: `{train_batch_size: "auto", train_micro_batch_size_per_gpu: "auto",
 * gradient_accumulation_steps, zero_optimization: {stage, offload_optimizer: {device, nvme_path},
 * offload_param: {device, nvme_path}, stage3_gather_16bit_weights_on_model_save},
 * gradient_clipping, steps_per_print: Infinity}` (nvme paths only with device `nvme`, else null).
 *
 * With a config file (`hfDsConfig`, `deepspeed_config_file`, `ACCELERATE_DEEPSPEED_CONFIG_FILE`):
 * `zero_optimization` is required; a setting `accelerate launch` took from its
 * config file that the DeepSpeed file shadows is an error; the fields only
 * fill the file's `"auto"` values, and the plugin's attributes are read back
 * from the file.
 *
 * Mixed precision: `fp16` adds `fp16: {enabled: true, auto_cast: true}` when
 * absent, `bf16`/`fp8` add `bf16: {enabled: true}`; the other dtype enabled in
 * the config is an error; missing sections become `{enabled: false}`; an
 * `"auto"` `enabled` is filled.
 */
export function resolveDeepSpeedConfig(input: ResolveDeepSpeedConfigInput = {}): DeepSpeedPlan {
  const user = (input.user ?? {}) as Record<string, unknown>;
  const section = (input.section ?? {}) as Record<string, SectionSetting<unknown> | undefined>;
  const problems: string[] = [];
  const warnings: string[] = [];
  const mp = input.mixedPrecision ?? 'no';

  const field = <T>(userKey: keyof DeepSpeedOptions, rowKey: string | undefined): Field<T> => {
    if (user[userKey] !== undefined) return { value: user[userKey] as T, name: `${userKey} in deepspeed({...})`, origin: 'user' };
    const s = rowKey ? section[rowKey] : undefined;
    if (s && s.source !== 'default' && s.value !== undefined) return { value: s.value as T, name: sectionFieldName(rowKey!, s), origin: s.source };
    return { value: undefined, name: userKey, origin: 'unset' };
  };
  const bad = (f: Field<unknown>, expected: string) => problems.push(`${f.name} is ${show(f.value)}; it must be ${expected}.`);

  // -- the fields, with Python's env fallbacks (the section carries the environment)
  const gaF = field<number | 'auto'>('gradientAccumulationSteps', 'gradientAccumulationSteps');
  let ga: number | 'auto' = 'auto';
  if (gaF.value !== undefined) {
    if (gaF.value === 'auto' || (Number.isInteger(gaF.value) && (gaF.value as number) >= 1)) ga = gaF.value;
    else bad(gaF, 'a whole number of steps, 1 or more, or "auto"');
  }
  const clipF = field<number | 'auto'>('gradientClipping', 'gradientClipping');
  let clip: number | 'auto' = 'auto';
  if (clipF.value !== undefined) {
    if (clipF.value === 'auto' || (typeof clipF.value === 'number' && Number.isFinite(clipF.value) && clipF.value >= 0)) clip = clipF.value;
    else bad(clipF, 'a number, 0 or more (0 = no clipping), or "auto"');
  }
  const stageF = field<number>('zeroStage', 'zeroStage');
  let stage = 2;
  if (stageF.value !== undefined) {
    if ([0, 1, 2, 3].includes(stageF.value)) stage = stageF.value;
    else bad(stageF, 'a ZeRO stage: 0, 1, 2 or 3');
  }
  const device = (key: 'offloadOptimizerDevice' | 'offloadParamDevice'): string => {
    const f = field<string>(key, key);
    if (f.value === undefined) return 'none';
    if (typeof f.value === 'string' && OFFLOAD_DEVICES.includes(f.value.toLowerCase())) return f.value.toLowerCase();
    bad(f, 'none, cpu or nvme');
    return 'none';
  };
  const optDevice = device('offloadOptimizerDevice');
  const paramDevice = device('offloadParamDevice');
  const optNvme = String(field<string>('offloadOptimizerNvmePath', 'offloadOptimizerNvmePath').value ?? 'none');
  const paramNvme = String(field<string>('offloadParamNvmePath', 'offloadParamNvmePath').value ?? 'none');
  const save16F = field<boolean>('zero3Save16bitModel', 'zero3Save16bitModel');
  const save16 = save16F.value === true;
  const initF = field<boolean>('zero3InitFlag', 'zero3InitFlag');
  const moeF = field<string | string[]>('transformerMoeClsNames', 'moeLayerClsNames');
  const moe =
    moeF.value === undefined
      ? undefined
      : (Array.isArray(moeF.value) ? moeF.value : String(moeF.value).split(',')).map((s) => s.trim()).filter((s) => s !== '');
  const isTrainBatchMin = user.isTrainBatchMin === undefined ? true : user.isTrainBatchMin === true;
  const enableMsamp = user.enableMsamp !== undefined ? user.enableMsamp === true : input.fp8Backend === 'MSAMP';
  const msampLevel = (user.msampOptLevel as string | undefined) ?? input.fp8OptLevel ?? 'O1';

  const attrs: Attrs = {
    gradientAccumulationSteps: ga,
    gradientClipping: clip,
    zeroStage: stage,
    offloadOptimizerDevice: optDevice,
    offloadParamDevice: paramDevice,
    offloadOptimizerNvmePath: optNvme,
    offloadParamNvmePath: paramNvme,
    zero3Save16bitModel: save16,
  };

  // -- the config: from a file, or built from the fields
  const fileF = field<string | DeepSpeedConfig>('hfDsConfig', 'configFile');
  const hasFile = fileF.value !== undefined && fileF.value !== 'none';
  let config: DeepSpeedConfig = {};
  let configSource: string | undefined;
  if (hasFile) {
    configSource = fileF.name;
    let loaded: unknown;
    if (typeof fileF.value === 'string') {
      const r = loadConfig(fileF.value, input.cwd ?? process.cwd());
      if (r.error) problems.push(`${fileF.name} is ${show(fileF.value)}: ${r.error}. Give a path to a DeepSpeed JSON config, the JSON itself, or an object.`);
      loaded = r.config;
    } else loaded = fileF.value;
    if (loaded !== undefined && !isObject(loaded)) {
      problems.push(`${fileF.name}: the DeepSpeed config must be a JSON object, not ${show(loaded)}.`);
    } else if (loaded !== undefined) {
      config = clone(loaded);
      if (!('gradient_accumulation_steps' in config)) {
        // Python writes 1 here, which then overrides the Accelerator's value at prepare without a word.
        config.gradient_accumulation_steps = 'auto';
        warnings.push(
          `the DeepSpeed config (${fileF.name}) has no gradient_accumulation_steps: accelerate-ts uses the Accelerator's gradient_accumulation_steps (as if the file said "auto"); ` +
            'Python Accelerate would use 1 and ignore the Accelerator\'s. Set gradient_accumulation_steps in the file to make it explicit.',
        );
      }
      if (!('zero_optimization' in config)) {
        problems.push(`the DeepSpeed config (${fileF.name}) has no zero_optimization section; add one, e.g. "zero_optimization": {"stage": 2}.`);
      }
      const dsFields = typeof input.configDsFields === 'string' ? input.configDsFields.split(',') : [...(input.configDsFields ?? [])];
      const shadowed = dsFields
        .map((f) => f.trim())
        .filter((f) => SHADOWED_BY_CONFIG_FILE.includes(f) && !(f === 'mixed_precision' && mp === 'no'));
      if (shadowed.length > 0) {
        problems.push(
          `with a DeepSpeed config file (${fileF.name}), the accelerate config file must not also set ${shadowed.join(', ')} (deepspeed_config section / mixed_precision): ` +
            'DeepSpeed would ignore them. Put them in the DeepSpeed config file instead and remove them from the accelerate config (or re-run `accelerate config`, which asks only for what applies).',
        );
      }
      // The fields fill only the file's "auto" values.
      for (const [attr, key] of PLUGIN_TO_CONFIG) {
        const { node, key: last } = findNode(config, key);
        if (node && node[last] === 'auto' && attrs[attr] !== undefined) node[last] = attrs[attr];
      }
      // ...and are read back from the file where it has a value.
      for (const [attr, key] of PLUGIN_TO_CONFIG) {
        const v = getConfigValue(config, key);
        if (v !== undefined && v !== null && v !== 'auto') (attrs as unknown as Record<string, unknown>)[attr] = v;
      }
      const fileStage = getConfigValue(config, 'zero_optimization.stage');
      if (fileStage !== undefined && ![0, 1, 2, 3].includes(fileStage as number)) {
        problems.push(`zero_optimization.stage in the DeepSpeed config (${fileF.name}) is ${show(fileStage)}; it must be 0, 1, 2 or 3.`);
      }
    }
  } else {
    config = {
      train_batch_size: 'auto',
      train_micro_batch_size_per_gpu: 'auto',
      gradient_accumulation_steps: ga,
      zero_optimization: {
        stage,
        offload_optimizer: { device: optDevice, nvme_path: optDevice === 'nvme' ? optNvme : null },
        offload_param: { device: paramDevice, nvme_path: paramDevice === 'nvme' ? paramNvme : null },
        stage3_gather_16bit_weights_on_model_save: save16,
      },
    };
    // Python: `if gradient_clipping:` — drops 0.0. Here 0 is written: no clipping, said explicitly.
    config.gradient_clipping = clip;
  }
  config.steps_per_print = Infinity;

  const isZero3 = getConfigValue(config, 'zero_optimization.stage') === 3;
  let zero3Init = initF.value === undefined ? isZero3 : initF.value === true;
  if (zero3Init && !isZero3) {
    if (initF.value !== undefined) warnings.push(`${initF.name} is true, but zero3_init_flag only applies to ZeRO stage 3 (this config has stage ${show(getConfigValue(config, 'zero_optimization.stage'))}); it is set to false.`);
    zero3Init = false;
  }

  if (enableMsamp && !('msamp' in config)) {
    if (attrs.zeroStage === 3) problems.push('MS-AMP (fp8 backend MSAMP) does not support ZeRO stage 3; use stage 0, 1 or 2.');
    else if (msampLevel !== 'O1' && msampLevel !== 'O2') problems.push(`msampOptLevel is ${show(msampLevel)}; it must be O1 or O2.`);
    else config.msamp = { enabled: true, opt_level: msampLevel };
  }

  // -- mixed precision (set_mixed_precision)
  if (!['no', 'fp16', 'bf16', 'fp8'].includes(mp)) {
    problems.push(`mixed precision is ${show(mp)}; it must be no, fp16, bf16 or fp8.`);
  } else {
    if (mp === 'fp16' && !('fp16' in config)) config.fp16 = { enabled: true, auto_cast: true };
    if ((mp === 'bf16' || mp === 'fp8') && !('bf16' in config)) config.bf16 = { enabled: true };
    if (mp === 'fp8' && enableMsamp && !('msamp' in config)) config.msamp = { enabled: true, opt_level: msampLevel };
    if (mp !== 'no') {
      const other = mp === 'fp16' ? 'bf16' : 'fp16';
      const section = config[other];
      if (isObject(section) && String(section.enabled ?? 'False').toLowerCase() === 'true') {
        problems.push(
          `mixed precision is ${mp}, but the DeepSpeed config${configSource ? ` (${configSource})` : ''} enables ${other} (${other}.enabled=true). ` +
            `Use one: set mixed_precision to ${other === 'bf16' ? 'bf16' : 'fp16'}, or set ${other}.enabled to false in the DeepSpeed config.`,
        );
      }
    }
    for (const dtype of ['fp16', 'bf16']) if (!(dtype in config)) config[dtype] = { enabled: false };
    for (const dtype of ['fp16', 'bf16']) {
      const s = config[dtype];
      if (isObject(s) && s.enabled === 'auto') s.enabled = dtype === 'fp16' ? mp === 'fp16' : mp === 'bf16' || mp === 'fp8';
    }
  }

  // -- a fixed train_batch_size that cannot be right (DeepSpeed would assert in initialize)
  const P = input.numProcesses;
  const tb = config.train_batch_size;
  const micro = config.train_micro_batch_size_per_gpu;
  const gaNow = config.gradient_accumulation_steps;
  if (P !== undefined && typeof tb === 'number' && typeof micro === 'number' && typeof gaNow === 'number' && tb !== micro * gaNow * P) {
    problems.push(trainBatchMismatch(tb, micro, gaNow, P, configSource));
  }

  if (problems.length > 0) throw new DeepSpeedConfigError(problems);
  return {
    config,
    configSource,
    ...attrs,
    zero3InitFlag: zero3Init,
    isTrainBatchMin,
    transformerMoeClsNames: moe,
    warnings,
  };
}

function trainBatchMismatch(tb: number, micro: number, ga: number, P: number, source: string | undefined, sp = 1): string {
  const expected = (micro * ga * P) / sp;
  return (
    `train_batch_size is ${tb} in the DeepSpeed config${source ? ` (${source})` : ''}, but train_micro_batch_size_per_gpu (${micro}) × gradient_accumulation_steps (${ga}) × processes (${P})` +
    `${sp > 1 ? ` / sequence-parallel size (${sp})` : ''} = ${expected}. Set train_batch_size to ${expected} or to "auto".`
  );
}

// ---- prepare-time filling ------------------------------------------------------------

/** What `prepare` knows when it fills the `"auto"` values (see {@link fillAuto}). */
export interface PrepareFacts {
  /** `batch_size` of each data loader in this `prepare` call (null = a loader without one). Empty: none passed. */
  loaderBatchSizes: ReadonlyArray<number | null>;
  /** Loaders yield the global batch, split across processes. */
  splitBatches?: boolean;
  numProcesses: number;
  /** The Accelerator's gradient accumulation steps. */
  gradientAccumulationSteps: number;
  /** Whether a model is in this call (Python fills the rest of the config only with one). Default true. */
  hasModel?: boolean;
  /** `model.config.hidden_size`, or the largest of `hidden_sizes`; undefined when the model has neither. */
  hiddenSize?: number;
  /** The optimizer in this call: a real one (its lr), DeepSpeed's from the config (`DummyOptim`), or none. */
  optimizer?: { kind: 'real' | 'dummy' | 'none'; lr?: number; weightDecay?: number };
  /** The scheduler: a real one, `DummyScheduler` (with or without an lr_scheduler_callable), or none. */
  scheduler?: { kind: 'real' | 'dummy' | 'none'; warmupNumSteps?: number; totalNumSteps?: number; hasCallable?: boolean };
  /** Several loaders: the smallest batch is the micro-batch (default: the plan's / true). */
  isTrainBatchMin?: boolean;
  /** DeepSpeed sequence parallel size (train_batch_size is divided by it). Default 1. */
  spSize?: number;
}

/** The config ready for `deepspeed.initialize`. */
export interface FilledDeepSpeedConfig {
  config: DeepSpeedConfig;
  /** The gradient accumulation steps in effect (DeepSpeed's value wins over the Accelerator's). */
  gradientAccumulationSteps: number;
  /** The micro-batch per process, when known. */
  microBatchSize: number | undefined;
  warnings: string[];
}

/**
 * Fills the `"auto"` values the way `Accelerator._prepare_deepspeed` does
 * (behaviours 66–67), returning a new config (the input is not modified):
 *
 * - `train_micro_batch_size_per_gpu` ← the loaders' batch size (÷ processes
 *   with split_batches; the min of several with `isTrainBatchMin`, else the
 *   max); no loader or a loader without a batch size → error.
 * - `gradient_accumulation_steps` ← the Accelerator's; when the config has
 *   another number, DeepSpeed's value wins, with a warning.
 * - `train_batch_size` ← micro × GA × processes (÷ sp); a fixed one that
 *   differs → error with the three numbers.
 * - `gradient_clipping` ← 1.0; `stage3_gather_16bit_weights_on_model_save` ← false.
 * - with hidden size h: `reduce_bucket_size` h², `stage3_prefetch_bucket_size`
 *   int(0.9·h²), `stage3_param_persistence_threshold` 10·h; those `"auto"` with
 *   no hidden size → error.
 * - optimizer in the config + a real optimizer, `DummyOptim` without one in the
 *   config, the scheduler analogues, `DummyScheduler` with a real optimizer →
 *   errors; a real optimizer sets `zero_allow_untested_optimizer`.
 * - `DummyOptim(lr=1e-3, weight_decay=0)` → `optimizer.params.{lr, weight_decay}`;
 *   `DummyScheduler` → `scheduler.params.{warmup_min_lr: 0, warmup_max_lr: lr,
 *   warmup_num_steps: max(1, w), total_num_steps: ceil(total / P) unless split}`.
 * - any `"auto"` left → one error naming every such key.
 */
export function fillAuto(input: DeepSpeedConfig | DeepSpeedPlan, facts: PrepareFacts): FilledDeepSpeedConfig {
  const plan = 'config' in input && isObject(input.config) && 'warnings' in input ? (input as DeepSpeedPlan) : undefined;
  const config = clone(plan ? plan.config : (input as DeepSpeedConfig));
  const problems: string[] = [];
  const warnings: string[] = [];
  const P = facts.numProcesses;
  const sp = facts.spSize ?? 1;
  const isTrainBatchMin = facts.isTrainBatchMin ?? plan?.isTrainBatchMin ?? true;

  // micro-batch
  let micro: number | undefined;
  if (isAuto(config, 'train_micro_batch_size_per_gpu')) {
    if (facts.loaderBatchSizes.length === 0) {
      problems.push(
        'train_micro_batch_size_per_gpu is "auto" but no data loader was passed to prepare(): pass the training (or evaluation) data loader in the same prepare() call, ' +
          'or set train_micro_batch_size_per_gpu to a number in the DeepSpeed config.',
      );
    } else if (facts.loaderBatchSizes.some((b) => b === null || b === undefined)) {
      problems.push('a data loader passed to prepare() has no batch size, so train_micro_batch_size_per_gpu ("auto") cannot be filled: set it to a number in the DeepSpeed config.');
    } else {
      let sizes = facts.loaderBatchSizes as number[];
      if (facts.splitBatches) sizes = sizes.map((b) => Math.floor(b / P));
      micro = isTrainBatchMin ? Math.min(...sizes) : Math.max(...sizes);
    }
  } else {
    const v = config.train_micro_batch_size_per_gpu;
    micro = typeof v === 'number' ? v : undefined;
  }

  // gradient accumulation
  if (isAuto(config, 'gradient_accumulation_steps')) config.gradient_accumulation_steps = facts.gradientAccumulationSteps;
  let ga = facts.gradientAccumulationSteps;
  const dsGa = config.gradient_accumulation_steps;
  if (dsGa !== ga) {
    warnings.push(
      `gradient accumulation steps mismatch: the Accelerator has ${ga}, the DeepSpeed config has ${show(dsGa)}. Using DeepSpeed's value (${show(dsGa)}); ` +
        'set them equal (or gradient_accumulation_steps to "auto" in the DeepSpeed config) to silence this.',
    );
    if (typeof dsGa === 'number') ga = dsGa;
  }

  const kwargs: Record<string, unknown> = {
    gradient_clipping: 1.0,
    'zero_optimization.stage3_gather_16bit_weights_on_model_save': false,
  };
  if (micro !== undefined) {
    kwargs.train_micro_batch_size_per_gpu = micro;
    kwargs.train_batch_size = Math.floor((micro * (typeof dsGa === 'number' ? dsGa : ga) * P) / sp);
  }

  // optimizer / scheduler consistency
  const opt = facts.optimizer?.kind ?? 'none';
  const sched = facts.scheduler?.kind ?? 'none';
  if (opt !== 'none') {
    if ('optimizer' in config && opt === 'real') {
      problems.push('the DeepSpeed config has an optimizer section and the code passes an optimizer too: remove the optimizer from the DeepSpeed config, or pass a DummyOptim in the code.');
    } else if (!('optimizer' in config) && opt === 'dummy') {
      problems.push('a DummyOptim needs an optimizer section in the DeepSpeed config (DeepSpeed builds that optimizer); add one, or pass a real optimizer.');
    }
    if (opt === 'real') config.zero_allow_untested_optimizer = true;
  }
  if (sched !== 'none') {
    if ('scheduler' in config && sched === 'real') {
      problems.push('the DeepSpeed config has a scheduler section and the code passes a scheduler too: remove the scheduler from the DeepSpeed config, or pass a DummyScheduler in the code.');
    } else if (!('scheduler' in config) && sched === 'dummy' && !facts.scheduler?.hasCallable) {
      problems.push('a DummyScheduler needs a scheduler section in the DeepSpeed config, or an lr_scheduler_callable.');
    }
  }
  if (opt === 'dummy' && sched !== 'none' && sched !== 'dummy') {
    problems.push('a DummyScheduler is the only scheduler that goes with a DummyOptim (DeepSpeed builds both from the config); use a DummyScheduler, or a real optimizer.');
  }

  if (facts.hasModel !== false) {
    const hiddenKeys = ['zero_optimization.reduce_bucket_size', 'zero_optimization.stage3_prefetch_bucket_size', 'zero_optimization.stage3_param_persistence_threshold'];
    const autoHidden = hiddenKeys.filter((k) => isAuto(config, k));
    if (autoHidden.length > 0) {
      const h = facts.hiddenSize;
      if (h === undefined || !Number.isFinite(h)) {
        problems.push(
          `the model has no config.hidden_size (nor hidden_sizes), so ${autoHidden.join(', ')} ("auto") cannot be filled: replace "auto" with numbers in the DeepSpeed config.`,
        );
      } else {
        kwargs['zero_optimization.reduce_bucket_size'] = h * h;
        kwargs['zero_optimization.stage3_prefetch_bucket_size'] = Math.trunc(0.9 * h * h);
        kwargs['zero_optimization.stage3_param_persistence_threshold'] = 10 * h;
      }
    }
    if (opt === 'dummy') {
      kwargs['optimizer.params.lr'] = facts.optimizer?.lr ?? 1e-3;
      kwargs['optimizer.params.weight_decay'] = facts.optimizer?.weightDecay ?? 0;
    }
    if (sched === 'dummy' && !facts.scheduler?.hasCallable) {
      kwargs['scheduler.params.warmup_min_lr'] = 0;
      kwargs['scheduler.params.warmup_max_lr'] = facts.optimizer?.lr ?? (opt === 'dummy' ? 1e-3 : null);
      kwargs['scheduler.params.warmup_num_steps'] = Math.max(1, facts.scheduler?.warmupNumSteps ?? 0);
      const total = facts.scheduler?.totalNumSteps;
      if (total !== undefined) kwargs['scheduler.params.total_num_steps'] = facts.splitBatches ? total : Math.ceil(total / P);
    }
    if (problems.length === 0) {
      const leftover: string[] = [];
      const walk = (node: DeepSpeedConfig, prefix: string) => {
        for (const [k, v] of Object.entries(node)) {
          const key = prefix + k;
          if (isObject(v)) walk(v, `${key}.`);
          else if (v === 'auto') {
            if (key in kwargs) node[k] = kwargs[key];
            else leftover.push(key);
          }
        }
      };
      walk(config, '');
      if (leftover.length > 0) {
        problems.push(
          `${leftover.join(', ')} ${leftover.length === 1 ? 'is' : 'are'} "auto" in the DeepSpeed config, and accelerate cannot fill ${leftover.length === 1 ? 'it' : 'them'}: set ${leftover.length === 1 ? 'a value' : 'values'} in the DeepSpeed config.`,
        );
      }
      const tb = config.train_batch_size;
      const m = config.train_micro_batch_size_per_gpu;
      const g = config.gradient_accumulation_steps;
      if (typeof tb === 'number' && typeof m === 'number' && typeof g === 'number' && tb !== (m * g * P) / sp) {
        problems.push(trainBatchMismatch(tb, m, g, P, plan?.configSource, sp));
      }
    }
  }

  if (problems.length > 0) throw new DeepSpeedConfigError(problems);
  return { config, gradientAccumulationSteps: ga, microBatchSize: micro, warnings };
}

// ---- launch-time validation ----------------------------------------------------------

/** Inputs of {@link validateDeepSpeedLaunchConfig}: what `accelerate launch` knows before spawning. */
export interface DeepSpeedLaunchInput {
  /** The launcher's resolved `deepspeed` section (`resolved.sections.deepspeed`). */
  section: DeepSpeedSection;
  numProcesses: number;
  /** The launch's mixed precision. */
  mixedPrecision?: string;
  /** Where the launch's mixed precision came from (`config file` counts as a DeepSpeed field, as in Python). */
  mixedPrecisionSource?: string;
  /** Working directory (relative DeepSpeed config paths). */
  cwd?: string;
}

/**
 * The problems a launch's DeepSpeed settings have, checked before any rank
 * starts with the rules the ranks apply (without options given in code): the
 * DeepSpeed config file loads and has zero_optimization, the accelerate config
 * file does not also set what it shadows, precision does not conflict, a fixed
 * train_batch_size fits the world. An empty list when they are fine.
 */
export function validateDeepSpeedLaunchConfig(input: DeepSpeedLaunchInput): string[] {
  const fields: string[] = [];
  const rowToField: Record<string, string> = {
    gradientAccumulationSteps: 'gradient_accumulation_steps',
    gradientClipping: 'gradient_clipping',
    zeroStage: 'zero_stage',
    offloadOptimizerDevice: 'offload_optimizer_device',
    offloadParamDevice: 'offload_param_device',
    offloadParamNvmePath: 'offload_param_nvme_path',
    offloadOptimizerNvmePath: 'offload_optimizer_nvme_path',
    zero3Save16bitModel: 'zero3_save_16bit_model',
  };
  for (const [row, name] of Object.entries(rowToField)) {
    const s = (input.section as Record<string, SectionSetting<unknown> | undefined>)[row];
    if (s?.source === 'config file') fields.push(name);
  }
  if (input.mixedPrecisionSource === 'config file') fields.push('mixed_precision');
  try {
    resolveDeepSpeedConfig({ section: input.section, numProcesses: input.numProcesses, mixedPrecision: input.mixedPrecision, configDsFields: fields, cwd: input.cwd });
    return [];
  } catch (e) {
    if (e instanceof DeepSpeedConfigError) return [...e.problems];
    throw e;
  }
}
