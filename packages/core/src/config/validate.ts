/**
 * Validation of a parsed config dict against the schema, with Python's
 * legacy conversions and default filling.
 * @module
 */
import {
  COMPUTE_ENVIRONMENTS,
  configFieldsFor,
  lookupSectionKey,
  type AccelerateConfigFile,
  type ComputeEnvironment,
  type ConfigFieldSpec,
  type ConfigValueType,
} from './schema.js';
import { ConfigError, showValue, suggestClosest, type ConfigIssue } from './errors.js';
import { BOOL_FALSE_STRINGS, BOOL_TRUE_STRINGS } from './env.js';

/** Result of validating a config dict. */
export interface ValidatedConfig {
  /** The content with Python's defaults filled in. */
  readonly config: AccelerateConfigFile;
  /** Top-level keys that were present in the file (after legacy conversion). */
  readonly present: ReadonlySet<string>;
  /** Non-fatal findings: legacy keys converted, unknown sub-keys ignored. */
  readonly warnings: readonly string[];
}

const TYPE_WORDS: Record<ConfigValueType, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'a boolean (true or false)',
  boolish: 'a boolean (true/false, or a string such as "yes"/"no")',
  'string[]': 'a list of strings',
  'boolean[]': 'a list of booleans',
  object: 'a mapping',
};

function typesOf(spec: ConfigFieldSpec): readonly ConfigValueType[] {
  return typeof spec.type === 'string' ? [spec.type] : spec.type;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function isBoolString(v: string): boolean {
  const l = v.toLowerCase();
  return BOOL_TRUE_STRINGS.includes(l) || BOOL_FALSE_STRINGS.includes(l);
}

function describeKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Date) return 'a date';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number';
  return `a ${typeof value}`;
}

/** Words for what `spec` accepts, e.g. `one of: no, fp16, bf16, fp8 (or null)`. */
export function describeExpected(spec: ConfigFieldSpec): string {
  const types = typesOf(spec);
  const parts: string[] = [];
  const enumStrings = (spec.enum ?? []).filter((v) => typeof v === 'string');
  const enumNumbers = (spec.enum ?? []).filter((v) => typeof v === 'number');
  for (const t of types) {
    if (t === 'string' && enumStrings.length > 0) parts.push(`one of: ${enumStrings.join(', ')}`);
    else if (t === 'integer' && enumNumbers.length > 0) {
      if (types.includes('string') && enumStrings.length > 0) parts.push(`an integer ${enumNumbers.join('/')}`);
      else parts.push(`one of: ${enumNumbers.join(', ')}`);
    } else parts.push(TYPE_WORDS[t]);
  }
  let out = parts.join(' or ');
  if (spec.nullable) out += ' (or null)';
  return out;
}

/** Checks `value` against `spec`; returns undefined when fine, else the issue (without source). */
function checkValue(key: string, value: unknown, spec: ConfigFieldSpec): ConfigIssue | undefined {
  if (value === null) {
    if (spec.nullable) return undefined;
    return mkIssue('invalid-type', key, value, spec);
  }
  const types = typesOf(spec);
  let typeMatched = false;
  for (const t of types) {
    switch (t) {
      case 'boolean':
        if (typeof value === 'boolean') return undefined;
        break;
      case 'boolish':
        if (typeof value === 'boolean') return undefined;
        if (typeof value === 'string' && isBoolString(value)) return undefined;
        break;
      case 'string':
        if (typeof value === 'string') {
          typeMatched = true;
          if (enumAccepts(spec, value)) return undefined;
        }
        break;
      case 'integer':
        if (typeof value === 'number' && Number.isInteger(value)) {
          typeMatched = true;
          if (enumAccepts(spec, value)) return undefined;
        }
        break;
      case 'number':
        if (typeof value === 'number' && Number.isFinite(value)) return undefined;
        break;
      case 'string[]':
        if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return undefined;
        break;
      case 'boolean[]':
        if (Array.isArray(value) && value.every((v) => typeof v === 'boolean')) return undefined;
        break;
      case 'object':
        if (isPlainObject(value)) return undefined;
        break;
    }
  }
  return mkIssue(typeMatched ? 'invalid-value' : 'invalid-type', key, value, spec);
}

function enumAccepts(spec: ConfigFieldSpec, value: string | number): boolean {
  if (!spec.enum) return true;
  if (typeof value === 'number') {
    const nums = spec.enum.filter((v) => typeof v === 'number');
    return nums.length === 0 || nums.includes(value);
  }
  const strs = spec.enum.filter((v): v is string => typeof v === 'string');
  if (strs.length === 0) return true;
  return spec.caseInsensitive ? strs.some((s) => s.toLowerCase() === value.toLowerCase()) : strs.includes(value);
}

function mkIssue(kind: 'invalid-type' | 'invalid-value', key: string, value: unknown, spec: ConfigFieldSpec): ConfigIssue {
  const expected = describeExpected(spec);
  let suggestion: string | undefined;
  if (typeof value === 'string' && spec.enum) {
    suggestion = suggestClosest(
      value,
      spec.enum.filter((v): v is string => typeof v === 'string'),
    );
  }
  const shown = showValue(value);
  let message =
    kind === 'invalid-type'
      ? `key "${key}" has value ${shown} (${describeKind(value)}), expected ${expected}`
      : `key "${key}" has value ${shown}, expected ${expected}`;
  if (suggestion) message += ` (did you mean "${suggestion}"?)`;
  return { kind, key, value, expected, suggestion, message };
}

function unknownKeyIssue(key: string, candidates: readonly string[], where: string): ConfigIssue {
  const dot = key.lastIndexOf('.');
  const parent = dot >= 0 ? key.slice(0, dot + 1) : '';
  const near = suggestClosest(key.slice(dot + 1), candidates);
  const suggestion = near === undefined ? undefined : parent + near;
  const message = suggestion
    ? `unknown key "${key}" (did you mean "${suggestion}"?)`
    : `unknown key "${key}": ${where} has no such key`;
  return { kind: 'unknown-key', key, suggestion, message };
}

/**
 * YAML 1.1 (PyYAML too) reads an unquoted `NO`/`no` as false. Where only a
 * string `no`-like value makes sense (`distributed_type: NO`,
 * `mixed_precision: no`, `dynamo_backend: NO`), take false to mean it.
 */
function unquotedNo(value: unknown, spec: ConfigFieldSpec): unknown {
  if (value !== false) return value;
  const types = typesOf(spec);
  if (types.includes('boolean') || types.includes('boolish')) return value;
  const no = spec.enum?.find((v): v is string => typeof v === 'string' && v.toLowerCase() === 'no');
  return no ?? value;
}

function clone<T>(v: T): T {
  return v === undefined ? v : structuredClone(v);
}

/** Options for {@link validateConfigDict}. */
export interface ValidateOptions {
  /**
   * Treat unknown sub-keys of the dict sections (`fsdp_config.x`) as errors.
   * Python passes them through silently, so by default they only warn.
   */
  strictSections?: boolean;
}

/**
 * Validates a parsed config dict (YAML/JSON content) the way Python's
 * `ClusterConfig.from_yaml_file` does, and more strictly: unknown top-level
 * keys, a missing `distributed_type`, wrong types and values outside the
 * allowed set are all reported together in one {@link ConfigError}.
 * Legacy keys are converted (`fp16: true` -> `mixed_precision: fp16`,
 * `dynamo_backend` -> `dynamo_config`) and defaults filled in.
 *
 * @param raw - the parsed content.
 * @param source - named in error messages, e.g. `config file /x/default_config.yaml`.
 */
export function validateConfigDict(raw: unknown, source: string, options: ValidateOptions = {}): ValidatedConfig {
  if (!isPlainObject(raw)) {
    const what = raw === null || raw === undefined ? 'the file is empty' : `the content is ${describeKind(raw)}`;
    throw new ConfigError(source, [
      {
        kind: 'parse-error',
        key: '',
        value: raw,
        message: `${what}; expected a mapping of keys such as "distributed_type: NO" (run \`accelerate config\` to write one)`,
      },
    ]);
  }
  const dict: Record<string, unknown> = structuredClone(raw);
  const issues: ConfigIssue[] = [];
  const warnings: string[] = [];

  // compute_environment picks the key table, so check it first.
  let env: ComputeEnvironment = 'LOCAL_MACHINE';
  if (dict.compute_environment === undefined || dict.compute_environment === null) {
    delete dict.compute_environment;
  } else if (
    typeof dict.compute_environment === 'string' &&
    (COMPUTE_ENVIRONMENTS as readonly string[]).includes(dict.compute_environment)
  ) {
    env = dict.compute_environment as ComputeEnvironment;
  } else {
    const spec = configFieldsFor('LOCAL_MACHINE').compute_environment;
    issues.push(checkValue('compute_environment', dict.compute_environment, spec) ?? mkIssue('invalid-value', 'compute_environment', dict.compute_environment, spec));
  }
  const fields = configFieldsFor(env);

  // Legacy conversions, as Python's process_config.
  if (Object.hasOwn(dict, 'fp16')) {
    if (!Object.hasOwn(dict, 'mixed_precision')) {
      dict.mixed_precision = dict.fp16 ? 'fp16' : null;
      warnings.push(
        `legacy key "fp16: ${showValue(dict.fp16)}" read as "mixed_precision: ${dict.mixed_precision === null ? 'null' : 'fp16'}" (run \`accelerate config update\` to rewrite the file)`,
      );
    } else {
      warnings.push(`legacy key "fp16" ignored because "mixed_precision" is set (run \`accelerate config update\` to remove it)`);
    }
    delete dict.fp16;
  }
  if (Object.hasOwn(dict, 'dynamo_backend')) {
    const backend = dict.dynamo_backend;
    delete dict.dynamo_backend;
    dict.dynamo_config = backend === 'NO' || backend === 'no' ? {} : { dynamo_backend: backend };
    warnings.push(
      `legacy key "dynamo_backend: ${showValue(backend)}" moved to "dynamo_config" (run \`accelerate config update\` to rewrite the file)`,
    );
  }
  if (Object.hasOwn(dict, 'ipex_config')) {
    // Written by `accelerate config` before 1.0; Python 1.x rejects the whole file for it.
    delete dict.ipex_config;
    warnings.push('legacy key "ipex_config" ignored: Accelerate 1.x dropped its Intel Extension for PyTorch settings (run `accelerate config update` to remove it)');
  }
  for (const [key, spec] of Object.entries(fields)) {
    if (Object.hasOwn(dict, key)) dict[key] = unquotedNo(dict[key], spec);
  }

  if (!Object.hasOwn(dict, 'distributed_type') || dict.distributed_type === null) {
    const spec = fields.distributed_type;
    issues.push({
      kind: 'missing-key',
      key: 'distributed_type',
      expected: describeExpected(spec),
      message: `key "distributed_type" is missing; it is required (${describeExpected(spec)})`,
    });
  }
  for (const [key, spec] of Object.entries(fields)) {
    if (spec.required && key !== 'distributed_type' && !Object.hasOwn(dict, key)) {
      issues.push({
        kind: 'missing-key',
        key,
        expected: describeExpected(spec),
        message: `key "${key}" is missing; it is required for ${env} (${describeExpected(spec)})`,
      });
    }
  }

  const known = Object.keys(fields);
  for (const [key, value] of Object.entries(dict)) {
    const spec = fields[key];
    if (!Object.hasOwn(fields, key)) {
      const issue = unknownKeyIssue(key, known, `a ${env} config`);
      issues.push(
        issue.suggestion ? issue : { ...issue, message: `${issue.message}; remove it (it may come from a newer Accelerate)` },
      );
      continue;
    }
    if (key === 'compute_environment' || (key === 'distributed_type' && value === null)) continue;
    const issue = checkValue(key, value, spec);
    if (issue) {
      issues.push(issue);
      continue;
    }
    if (spec.type === 'object' && isPlainObject(value) && spec.properties && !spec.openKeys) {
      const subKnown = Object.keys(spec.properties);
      for (const [subKey, subValue] of Object.entries(value)) {
        const dotted = `${key}.${subKey}`;
        const found = lookupSectionKey(spec, subKey);
        if (!found) {
          const sub = unknownKeyIssue(dotted, subKnown, `"${key}"`);
          if (options.strictSections) issues.push(sub);
          else warnings.push(`${sub.message}; Accelerate ignores it`);
          continue;
        }
        // A null sub-value means "unset" for Python (the launcher skips it).
        if (subValue === null) continue;
        const fixed = unquotedNo(subValue, found.spec);
        if (fixed !== subValue) (value as Record<string, unknown>)[subKey] = fixed;
        const subIssue = checkValue(dotted, fixed, found.spec);
        if (subIssue) issues.push(subIssue);
      }
    }
  }

  if (issues.length > 0) throw new ConfigError(source, issues);

  const present = new Set(Object.keys(dict));
  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(fields)) {
    if (Object.hasOwn(dict, key)) config[key] = clone(dict[key]);
    else if (spec.default !== undefined) config[key] = clone(spec.default);
  }
  // Python: a config without num_processes and distributed_type NO runs one process.
  if (!present.has('num_processes') && config.distributed_type === 'NO' && env === 'LOCAL_MACHINE') {
    config.num_processes = 1;
  }
  // Python turns missing/None dict sections into {}.
  for (const [key, spec] of Object.entries(fields)) {
    if (spec.type === 'object' && spec.default !== null && (config[key] === null || config[key] === undefined)) {
      config[key] = {};
    }
  }
  return { config: config as unknown as AccelerateConfigFile, present, warnings };
}
