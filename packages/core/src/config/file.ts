/**
 * Reading and writing Accelerate's config file (`default_config.yaml`).
 *
 * The format is Python Accelerate's: YAML (read with YAML 1.1 rules, as
 * PyYAML does, so `use_cpu: yes` is true and written strings such as `'no'`
 * are quoted), or JSON when the file name ends in `.json`.
 * @module
 */
import type { EnvironmentVariables } from '../state/environment.js';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFileAtomicSync } from '../checkpoint/atomic.js';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Document, parse as parseYaml, Scalar } from 'yaml';
import type { MixedPrecision } from '../interfaces/backend.js';
import { ConfigError } from './errors.js';
import {
  configFieldsFor,
  lookupSectionKey,
  MIXED_PRECISIONS,
  type AccelerateConfigFile,
  type ClusterConfigFile,
  type ComputeEnvironment,
  type ConfigDistributedType,
  type ConfigFieldSpec,
} from './schema.js';
import { validateConfigDict, type ValidateOptions } from './validate.js';


function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return join(homedir(), p.slice(2));
  return p;
}

/**
 * The Hugging Face cache folder: `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`,
 * else `~/.cache/huggingface` (a leading `~` is expanded, as Python does).
 */
export function hfHome(env: EnvironmentVariables = process.env): string {
  if (env.HF_HOME) return expandHome(env.HF_HOME);
  const cache = env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  return join(cache, 'huggingface');
}

/** Folder holding Accelerate's config: `<hfHome>/accelerate`. */
export function accelerateCacheDir(env: EnvironmentVariables = process.env): string {
  return join(hfHome(env), 'accelerate');
}

/** Default config file path: `<hfHome>/accelerate/default_config.yaml`. */
export function defaultConfigPath(env: EnvironmentVariables = process.env): string {
  return join(accelerateCacheDir(env), 'default_config.yaml');
}

/** The default config file if it exists, else `null`. */
export function findDefaultConfigFile(env: EnvironmentVariables = process.env): string | null {
  const p = defaultConfigPath(env);
  return existsSync(p) ? p : null;
}

/** File format chosen from the name: `.json` is JSON, anything else YAML. */
export function configFormatOf(path: string): 'json' | 'yaml' {
  return path.toLowerCase().endsWith('.json') ? 'json' : 'yaml';
}

/** A config file read, validated, converted and completed with defaults. */
export interface LoadedConfigFile {
  /** Absolute path of the file. */
  readonly path: string;
  readonly format: 'json' | 'yaml';
  /** Content with Python's defaults filled in (what Python's `ClusterConfig` holds). */
  readonly config: AccelerateConfigFile;
  /** Top-level keys present in the file itself (after legacy conversion). */
  readonly present: ReadonlySet<string>;
  /** Non-fatal findings (legacy keys converted, unknown sub-keys ignored). */
  readonly warnings: readonly string[];
}

/** Options for {@link loadConfigFile}. */
export interface LoadConfigOptions extends ValidateOptions {
  /** Environment used to find the default file (default `process.env`). */
  env?: EnvironmentVariables;
}

/**
 * Parses config text. YAML is read with YAML 1.1 rules (PyYAML's), so files
 * written by Python mean the same here.
 */
export function parseConfigText(text: string, format: 'json' | 'yaml', source: string): unknown {
  try {
    if (format === 'json') return JSON.parse(text);
    return parseYaml(text, { version: '1.1', uniqueKeys: true });
  } catch (e) {
    const reason = (e as Error).message.split('\n')[0];
    throw new ConfigError(source, [
      { kind: 'parse-error', key: '', message: `cannot parse it as ${format.toUpperCase()}: ${reason}` },
    ]);
  }
}

/**
 * Reads and validates a config file (default: {@link defaultConfigPath}).
 * Unknown keys, a missing `distributed_type`, wrong types or values throw a
 * {@link ConfigError} naming the file, the (dotted) key, the value, what is
 * allowed and, for misspelt keys, the nearest valid one. Legacy keys are
 * converted (`fp16: true` -> `mixed_precision: fp16`, `dynamo_backend` ->
 * `dynamo_config`) with a warning in `warnings`.
 */
export function loadConfigFile(path?: string, options: LoadConfigOptions = {}): LoadedConfigFile {
  const file = resolve(path ?? defaultConfigPath(options.env ?? process.env));
  const source = `config file ${file}`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT'
        ? path === undefined
          ? 'the file does not exist; run `accelerate config` (or `accelerate config default`) to create it'
          : 'the file does not exist; pass an existing file, or run `accelerate config --config_file <path>` to create it'
        : `cannot read it: ${(e as Error).message}`;
    throw new ConfigError(source, [{ kind: 'file-not-found', key: '', message }]);
  }
  const format = configFormatOf(file);
  const raw = parseConfigText(text, format, source);
  const { config, present, warnings } = validateConfigDict(raw, source, options);
  return { path: file, format, config, present, warnings };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function specTypes(spec: ConfigFieldSpec | undefined): readonly string[] {
  if (!spec) return [];
  return typeof spec.type === 'string' ? [spec.type] : spec.type;
}

/**
 * The dict Python's `to_dict()` writes: top-level `null`s and empty dict
 * sections dropped, keys sorted (recursively, like `yaml.safe_dump` and
 * `json.dumps(sort_keys=True)`).
 */
export function configToDict(config: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(config).sort()) {
    const value = config[key];
    if (value === null || value === undefined) continue;
    if (isPlainObject(value) && Object.keys(value).length === 0) continue;
    out[key] = sortDeep(value);
  }
  return out;
}

function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep);
  if (isPlainObject(v)) {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) o[k] = sortDeep(v[k]);
    return o;
  }
  return v;
}

// Python writes float-typed values with a fraction (`gradient_clipping: 1.0`).
function isFloatKey(fields: Readonly<Record<string, ConfigFieldSpec>>, path: readonly string[]): boolean {
  let spec: ConfigFieldSpec | undefined = fields[path[0]];
  if (path.length === 2 && spec) spec = lookupSectionKey(spec, path[1])?.spec;
  else if (path.length > 2) return false;
  const types = specTypes(spec);
  return types.includes('number') && !types.includes('integer');
}

/**
 * Serialises a config as Python Accelerate would write it: YAML like
 * `yaml.safe_dump` (sorted keys, block style, `'no'` quoted) or JSON like
 * `json.dumps(indent=2, sort_keys=True)` plus a newline.
 */
export function serializeConfig(config: Readonly<Record<string, unknown>>, format: 'json' | 'yaml'): string {
  const env: ComputeEnvironment = config.compute_environment === 'AMAZON_SAGEMAKER' ? 'AMAZON_SAGEMAKER' : 'LOCAL_MACHINE';
  const fields = configFieldsFor(env);
  const dict = configToDict(config);
  if (format === 'json') {
    const FLOAT_MARK = '\u0000float:';
    const text = JSON.stringify(
      dict,
      function (this: unknown, key: string, value: unknown) {
        if (typeof value === 'number' && Number.isInteger(value) && key !== '') {
          const parentKey = Object.entries(dict).find(([, v]) => v === this)?.[0];
          const path = parentKey === undefined ? [key] : [parentKey, key];
          if (isFloatKey(fields, path)) return `${FLOAT_MARK}${value}.0`;
        }
        return value;
      },
      2,
    );
    // Python's json.dumps escapes non-ASCII characters by default.
    const ascii = text
      .replace(/"\\u0000float:([^"]+)"/g, '$1')
      .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    return `${ascii}\n`;
  }
  const withFloats: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(dict)) {
    if (isPlainObject(value)) {
      const sub: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) sub[k] = floatNode(v, isFloatKey(fields, [key, k]));
      withFloats[key] = sub;
    } else {
      withFloats[key] = floatNode(value, isFloatKey(fields, [key]));
    }
  }
  const doc = new Document(withFloats, { version: '1.1' });
  return doc.toString({ indentSeq: false, singleQuote: true, lineWidth: 0 });
}

function floatNode(v: unknown, isFloat: boolean): unknown {
  if (isFloat && typeof v === 'number' && Number.isInteger(v)) {
    const s = new Scalar(v);
    s.minFractionDigits = 1;
    return s;
  }
  return v;
}

/**
 * Writes a config file atomically (`writeFileAtomicSync`: a temporary file in
 * the same folder, fsync, then a rename), creating the folder if needed. JSON for `.json` paths, else
 * YAML; the content is what {@link serializeConfig} produces.
 */
export function saveConfigFile(config: Readonly<Record<string, unknown>>, path: string): string {
  const file = resolve(path);
  const text = serializeConfig(config, configFormatOf(file));
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomicSync(file, text);
  return file;
}

/** Devices found on this machine, for {@link basicConfig}. */
export interface DetectedDevices {
  /** Accelerator kind in Accelerate's naming: `GPU` (CUDA), `XPU`, `NPU`, `MLU`, `SDAA`, `MUSA`, `HPU`, `NEURON`. */
  kind: 'GPU' | 'XPU' | 'NPU' | 'MLU' | 'SDAA' | 'MUSA' | 'HPU' | 'NEURON';
  /** How many of them. */
  count: number;
}

/**
 * The config Python's `write_basic_config` builds: with `devices` (N
 * accelerators) `num_processes: N` and `MULTI_<kind>` when N > 1 (else `NO`);
 * without, a CPU-only `NO` config with `use_cpu: true`. Python's dataclass
 * defaults are filled in, as Python writes them.
 */
export function basicConfig(mixedPrecision: string = 'no', devices?: DetectedDevices | null): ClusterConfigFile {
  const mp = mixedPrecision.toLowerCase();
  if (!(MIXED_PRECISIONS as readonly string[]).includes(mp)) {
    throw new ConfigError('`mixed_precision`', [
      {
        kind: 'invalid-value',
        key: 'mixed_precision',
        value: mixedPrecision,
        expected: `one of: ${MIXED_PRECISIONS.join(', ')}`,
        message: `mixed_precision should be one of: ${MIXED_PRECISIONS.join(', ')}; got ${JSON.stringify(mixedPrecision)}`,
      },
    ]);
  }
  const raw: Record<string, unknown> = {
    compute_environment: 'LOCAL_MACHINE',
    mixed_precision: mp as MixedPrecision,
    debug: false,
    enable_cpu_affinity: false,
  };
  if (devices && devices.count > 0) {
    raw.num_processes = devices.count;
    raw.use_cpu = false;
    raw.distributed_type = (devices.count > 1 ? `MULTI_${devices.kind}` : 'NO') as ConfigDistributedType;
  } else {
    raw.use_cpu = true;
    raw.num_processes = 1;
    raw.distributed_type = 'NO';
  }
  return validateConfigDict(raw, 'basic config').config as ClusterConfigFile;
}

/** Result of {@link writeBasicConfig}. */
export interface WriteBasicConfigResult {
  /** True when the file was written; false when one already existed. */
  written: boolean;
  /** Absolute path of the config file. */
  path: string;
}

/**
 * `accelerate config default`: writes {@link basicConfig} to `path` (default
 * {@link defaultConfigPath}) unless a file is already there (then nothing is
 * written and `written` is false).
 *
 * Python's `write_basic_config` writes JSON text even into a `.yaml` path;
 * we write YAML into `.yaml` paths and JSON into `.json` ones. Both readers
 * accept both (JSON is valid YAML).
 */
export function writeBasicConfig(options: {
  mixedPrecision?: string;
  path?: string;
  devices?: DetectedDevices | null;
  env?: EnvironmentVariables;
} = {}): WriteBasicConfigResult {
  const file = resolve(options.path ?? defaultConfigPath(options.env ?? process.env));
  const config = basicConfig(options.mixedPrecision ?? 'no', options.devices);
  if (existsSync(file)) return { written: false, path: file };
  saveConfigFile(config as unknown as Record<string, unknown>, file);
  return { written: true, path: file };
}
