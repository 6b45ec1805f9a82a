/**
 * `accelerate to-fsdp2 --config_file F [--overwrite] [--output_file O]`:
 * rewrites an FSDP1 config file for FSDP2, as Python's `accelerate to-fsdp2`:
 * `fsdp_backward_prefetch`, `fsdp_use_orig_params`, `fsdp_sync_module_states`
 * and `fsdp_forward_prefetch` are dropped, `fsdp_sharding_strategy` becomes
 * `fsdp_reshard_after_forward` (FULL_SHARD / HYBRID_SHARD true, the others
 * false), every other key is kept, and `fsdp_version: 2` is set. A config
 * that already says FSDP2 is left unchanged, with a warning.
 *
 * Unlike Python (which re-dumps the whole file with sorted keys), a YAML file
 * keeps its order, comments and quoting: only the FSDP keys change.
 * @module
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { isMap, isScalar, parseDocument, type Pair, type YAMLMap } from 'yaml';
import { CliError, type CliContext } from '../context.js';

/** Options of {@link runToFsdp2}. */
export interface ToFsdp2Options {
  /** The FSDP1 config file to convert. */
  configFile: string;
  /** Where to write the result; with {@link overwrite} and no output file, the input file itself. */
  outputFile?: string;
  /** Allow replacing an existing file (the input when no output file is given). */
  overwrite?: boolean;
}

/** What becomes of one `fsdp_config` key. */
type KeyRule = { kind: 'removed' } | { kind: 'not-implemented' } | { kind: 'strategy' };

const KEY_RULES: Readonly<Record<string, KeyRule>> = {
  fsdp_backward_prefetch: { kind: 'removed' },
  fsdp_use_orig_params: { kind: 'removed' },
  fsdp_sync_module_states: { kind: 'removed' },
  fsdp_forward_prefetch: { kind: 'not-implemented' },
  fsdp_sharding_strategy: { kind: 'strategy' },
};

const STRATEGIES = ['FULL_SHARD', 'SHARD_GRAD_OP', 'NO_SHARD', 'HYBRID_SHARD', 'HYBRID_SHARD_ZERO2'] as const;
/** FSDP1 strategy -> FSDP2 `reshard_after_forward`. */
const RESHARD_OF: Readonly<Record<(typeof STRATEGIES)[number], boolean>> = {
  FULL_SHARD: true,
  SHARD_GRAD_OP: false,
  NO_SHARD: false,
  HYBRID_SHARD: true,
  HYBRID_SHARD_ZERO2: false,
};

/** A strategy by name (any case) or number 1..5; undefined for anything else. */
function strategyOf(value: unknown): (typeof STRATEGIES)[number] | undefined {
  const text = String(value).trim().toUpperCase();
  const byName = STRATEGIES.find((s) => s === text);
  if (byName) return byName;
  if (/^[1-5]$/.test(text)) return STRATEGIES[Number(text) - 1];
  return undefined;
}

/** Keys inside `fsdp_config` may be written with or without the `fsdp_` prefix (as `accelerate launch` reads them). */
const canonical = (key: string) => (key.startsWith('fsdp_') ? key : `fsdp_${key}`);

/** One change to the `fsdp_config` entries, by index. */
type Edit = { index: number; kind: 'drop' } | { index: number; kind: 'set'; key: string; value: unknown };

/** The edits that turn FSDP1 entries into FSDP2 ones, with the messages to show. */
interface Conversion {
  /** false: leave the file as it is. */
  convert: boolean;
  edits: Edit[];
  /** Index of an existing `fsdp_version` entry (set to 2), or -1 (append it). */
  versionIndex: number;
  warnings: string[];
  infos: string[];
}

function planConversion(entries: ReadonlyArray<{ key: string; value: unknown }>, file: string): Conversion {
  const none = (infos: string[], warnings: string[]): Conversion => ({ convert: false, edits: [], versionIndex: -1, warnings, infos });
  if (entries.length === 0) return none(['No FSDP config found in the config file, skipping conversion...'], []);
  const versionIndex = entries.findIndex((e) => canonical(e.key) === 'fsdp_version');
  const version = versionIndex >= 0 ? Number(entries[versionIndex].value) : 1;
  if (version === 2) {
    return none(
      [],
      ['Config already specifies FSDP2, skipping conversion...', "If the config doesn't use new argument names, change `fsdp_version` to `1` and rerun the command."],
    );
  }
  const warnings: string[] = [];
  const edits: Edit[] = [];
  const strategyIndex = entries.findIndex((e) => canonical(e.key) === 'fsdp_sharding_strategy');
  entries.forEach(({ key, value }, index) => {
    const name = canonical(key);
    const rule = KEY_RULES[name];
    if (rule?.kind === 'removed') {
      warnings.push(`Argument ${key} has been removed in FSDP2, skipping this key...`);
      edits.push({ index, kind: 'drop' });
      return;
    }
    if (rule?.kind === 'not-implemented') {
      warnings.push(`Argument ${key} is not yet implemented in FSDP2, skipping this key...`);
      edits.push({ index, kind: 'drop' });
      return;
    }
    const isStrategy = rule?.kind === 'strategy';
    // FSDP1 files may also hold a strategy name in fsdp_reshard_after_forward.
    const isReshard = name === 'fsdp_reshard_after_forward';
    if (!isStrategy && !isReshard) return;
    if (isReshard && typeof value === 'boolean') {
      if (strategyIndex >= 0) edits.push({ index, kind: 'drop' }); // the strategy decides
      return;
    }
    const strategy = strategyOf(value);
    if (!strategy) {
      throw new CliError(
        `${file}: fsdp_config.${key} is ${JSON.stringify(value)}, which is not a sharding strategy (${STRATEGIES.map((s, i) => `${s} = ${i + 1}`).join(', ')}). Fix it and rerun the command.`,
      );
    }
    if (isReshard && strategyIndex >= 0) {
      const other = strategyOf(entries[strategyIndex].value);
      if (other && RESHARD_OF[other] !== RESHARD_OF[strategy]) {
        warnings.push(`fsdp_config.${key}: ${String(value)} disagrees with fsdp_sharding_strategy: ${String(entries[strategyIndex].value)}; the sharding strategy is used.`);
      }
      edits.push({ index, kind: 'drop' });
      return;
    }
    if (strategy === 'NO_SHARD' || strategy.startsWith('HYBRID')) {
      warnings.push(
        `${strategy} has no fsdp_reshard_after_forward equivalent: it becomes ${RESHARD_OF[strategy]}` +
          (strategy === 'NO_SHARD' ? ' (parameters are sharded in FSDP2).' : '; FSDP2 shards hybrid through parallelism_config (dp_replicate_size x dp_shard_size).'),
      );
    }
    edits.push({ index, kind: 'set', key: 'fsdp_reshard_after_forward', value: RESHARD_OF[strategy] });
  });
  return { convert: true, edits, versionIndex, warnings, infos: [] };
}

/**
 * Converts a config dict (`fsdp_config` inside) to FSDP2; the input is not
 * changed. Returns the new config (the same object when nothing changed) and
 * the messages Python logs.
 */
export function convertConfigToFsdp2(config: Readonly<Record<string, unknown>>, file = 'the config file'): { config: Record<string, unknown>; changed: boolean; warnings: string[]; infos: string[] } {
  const fsdp = config.fsdp_config;
  const entries = fsdp !== null && typeof fsdp === 'object' && !Array.isArray(fsdp) ? Object.entries(fsdp).map(([key, value]) => ({ key, value })) : [];
  const plan = planConversion(entries, file);
  if (!plan.convert) return { config: config as Record<string, unknown>, changed: false, warnings: plan.warnings, infos: plan.infos };
  const out: Record<string, unknown> = {};
  entries.forEach(({ key, value }, index) => {
    const edit = plan.edits.find((e) => e.index === index);
    if (edit?.kind === 'drop') return;
    if (edit?.kind === 'set') out[edit.key] = edit.value;
    else out[key] = value;
  });
  if (plan.versionIndex >= 0) out[entries[plan.versionIndex].key] = 2;
  else out.fsdp_version = 2;
  return { config: { ...config, fsdp_config: out }, changed: true, warnings: plan.warnings, infos: plan.infos };
}

/** The YAML text converted in place (order, comments and quoting of everything else kept), or null when unchanged. */
function convertYamlText(text: string, file: string): { text: string | null; warnings: string[]; infos: string[] } {
  const doc = parseDocument(text, { version: '1.1', uniqueKeys: true });
  if (doc.errors.length > 0) throw new CliError(`${file}: cannot parse it as YAML: ${doc.errors[0].message.split('\n')[0]}`);
  const node = doc.get('fsdp_config', true);
  const map = isMap(node) ? (node as YAMLMap<unknown, unknown>) : undefined;
  const pairs = (map?.items ?? []) as Pair<unknown, unknown>[];
  const entries = pairs.map((p) => ({ key: String(isScalar(p.key) ? p.key.value : p.key), value: isScalar(p.value) ? p.value.value : p.value }));
  const plan = planConversion(entries, file);
  if (!plan.convert || !map) return { text: null, warnings: plan.warnings, infos: plan.infos };
  for (const edit of plan.edits) {
    const pair = pairs[edit.index];
    if (edit.kind === 'set') {
      pair.key = doc.createNode(edit.key);
      pair.value = doc.createNode(edit.value);
    }
  }
  if (plan.versionIndex >= 0) pairs[plan.versionIndex].value = doc.createNode(2);
  map.items = pairs.filter((_, i) => !plan.edits.some((e) => e.index === i && e.kind === 'drop'));
  if (plan.versionIndex < 0) map.add(doc.createPair('fsdp_version', 2));
  return { text: doc.toString(), warnings: plan.warnings, infos: plan.infos };
}

/**
 * Runs `accelerate to-fsdp2`: checks the arguments (the input exists; an
 * output is named unless `--overwrite`; an existing output needs
 * `--overwrite`), converts, and writes the result.
 *
 * @returns the file written.
 */
export function runToFsdp2(ctx: CliContext, options: ToFsdp2Options): string {
  const input = resolve(options.configFile);
  if (!existsSync(input)) throw new CliError(`Config file ${input} not found. Pass an existing file with --config_file.`);
  if (!options.overwrite && options.outputFile === undefined) {
    throw new CliError('If --overwrite is not set, --output_file must be provided: pass --output_file <path> for the converted config, or --overwrite to replace the input file.');
  }
  const output = resolve(options.outputFile ?? input);
  if (!options.overwrite && existsSync(output)) {
    throw new CliError(`Output file ${output} already exists and --overwrite is not set: pass --overwrite to replace it, or another --output_file.`);
  }
  const text = readFileSync(input, 'utf8');
  let converted: string | null;
  let warnings: string[];
  let infos: string[];
  if (input.toLowerCase().endsWith('.json')) {
    let config: unknown;
    try {
      config = JSON.parse(text);
    } catch (e) {
      throw new CliError(`${input}: cannot parse it as JSON: ${(e as Error).message}`);
    }
    if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new CliError(`${input}: the config must be a JSON object.`);
    const r = convertConfigToFsdp2(config as Record<string, unknown>, input);
    converted = r.changed ? `${JSON.stringify(r.config, null, 2)}\n` : null;
    ({ warnings, infos } = r);
  } else {
    ({ text: converted, warnings, infos } = convertYamlText(text, input));
  }
  for (const w of warnings) ctx.stderr(`warning: ${w}\n`);
  for (const i of infos) ctx.stdout(`${i}\n`);
  if (converted === null) {
    // Unchanged: an output file still gets the config (byte for byte); the input itself is left alone.
    if (output !== input) writeFileSync(output, text);
    ctx.stdout(output === input ? `${input} left unchanged.\n` : `Config written unchanged to ${output}.\n`);
    return output;
  }
  writeFileSync(output, converted);
  ctx.stdout(`FSDP2 config saved at ${output}.\n`);
  return output;
}

/** Registers `to-fsdp2` on the program. */
export function registerToFsdp2Command(program: Command, ctx: CliContext): void {
  program
    .command('to-fsdp2')
    .description('Convert an FSDP1 config file to FSDP2 (drops the FSDP1-only keys, fsdp_sharding_strategy -> fsdp_reshard_after_forward, fsdp_version: 2).')
    .requiredOption('--config_file <path>', 'The FSDP1 config file to convert.')
    .option('--output_file <path>', 'Where to write the converted config (required unless --overwrite).')
    .option('--overwrite', 'Replace an existing file: the input itself when no --output_file is given.', false)
    .action((opts: { config_file: string; output_file?: string; overwrite?: boolean }) => {
      runToFsdp2(ctx, { configFile: opts.config_file, outputFile: opts.output_file, overwrite: opts.overwrite });
    });
}
