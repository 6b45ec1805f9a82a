/**
 * `accelerate estimate-memory <path> [--dtypes float32 float16 int8 int4]`:
 * how much memory a model needs to load and to train, without loading it.
 *
 * The model is read locally, never downloaded:
 * - a safetensors file, a `*.safetensors.index.json` (its shards), or a
 *   folder of them (sharded or not): only the headers are read (tensor
 *   names, dtypes, shapes). In a folder holding `model*.safetensors` files
 *   or an index (a model save, or an `Accelerator.saveState` checkpoint),
 *   only those and the index's shards are counted: optimizer and RNG state
 *   files are not model weights;
 * - an HF `config.json` (or a folder holding one and no weights): parameter
 *   shapes are derived from the config for the architectures in
 *   {@link SUPPORTED_MODEL_TYPES}.
 *
 * The table is Accelerate's: sizes per dtype from the parameter count
 * (float32 4 bytes, float16/bfloat16 2, int8 1, int4 ½), the largest layer
 * (a transformer block counts as one layer, as `_no_split_modules` makes it
 * in Accelerate; otherwise the largest leaf module), and training with Adam
 * for a batch of 1: float32 = 4 × the float32 size (weights, gradients and
 * two Adam moments), float16/bfloat16 mixed precision = 2 × the float32
 * size; int8/int4 cannot be trained (N/A). Units are 1024-based.
 * @module
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { SafetensorsFile } from '@accelerate/core';
import { safetensorsDTypeBits } from '@accelerate/core/internal';
import type { Command } from 'commander';
import { CliError, type CliContext } from '../context.js';

/** Architectures whose parameter shapes are derived from `config.json` (`model_type`). */
export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'gpt2', 'bert'] as const;

/** The dtypes the table can show. */
export const ESTIMATE_DTYPES = ['float32', 'float16', 'bfloat16', 'int8', 'int4'] as const;
/** One of {@link ESTIMATE_DTYPES}. */
export type EstimateDType = (typeof ESTIMATE_DTYPES)[number];

/** A tensor of the model: name and shape (dtype bits when read from a file). */
export interface TensorShape {
  name: string;
  shape: number[];
  /** Bits per element in the file, when known. */
  bits?: number;
}

/** What the model is made of, before any dtype is chosen. */
export interface ModelShape {
  /** Where it came from (file, folder, config). */
  source: string;
  /** Files read (safetensors shards, or the config). */
  files?: string[];
  /** Safetensors files of the folder left out because they are not model weights (optimizer, RNG states, …). */
  skipped?: string[];
  tensors: TensorShape[];
  /** Names of the blocks kept whole for "largest layer" (`model.layers.0`, …). */
  blocks: string[];
}

/** One row of the table, in bytes. */
export interface EstimateRow {
  dtype: EstimateDType;
  largestLayer: number;
  totalSize: number;
  /** Bytes to train with Adam, or null (N/A) for int8/int4. */
  training: number | null;
}

/** Result of {@link estimateMemory}. */
export interface MemoryEstimate {
  source: string;
  parameters: number;
  largestLayerName: string;
  largestLayerParameters: number;
  rows: EstimateRow[];
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

// ---------------------------------------------------------------------------
// Shapes from safetensors headers

const BLOCK = /^(.*?\b(?:layers|layer|h|blocks|block)\.\d+)\./;

function blocksOf(names: readonly string[]): string[] {
  const out = new Set<string>();
  for (const n of names) {
    const m = BLOCK.exec(n);
    if (m) out.add(m[1]);
  }
  return [...out];
}

const isIndex = (name: string) => name.endsWith('.safetensors.index.json');
const isModelWeights = (name: string) => /^model.*\.safetensors$/.test(name);

/** The shard files an index lists (its `weight_map` values), checked to exist. */
function shardsOfIndex(indexFile: string, index?: unknown): string[] {
  if (index === undefined) {
    try {
      index = JSON.parse(readFileSync(indexFile, 'utf8'));
    } catch (cause) {
      throw new CliError(`${indexFile} is not valid JSON (${(cause as Error).message}); an index holds {"metadata": ..., "weight_map": {tensor: shard file}}.`);
    }
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new CliError(`${indexFile}: "weight_map" must be an object mapping tensor names to shard files.`);
  }
  const folder = dirname(indexFile);
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  const out: string[] = [];
  for (const shard of shards) {
    if (typeof shard !== 'string' || !shard.endsWith('.safetensors')) {
      throw new CliError(`${indexFile}: shard ${JSON.stringify(shard)} is not a .safetensors file; estimate-memory reads safetensors headers only.`);
    }
    const file = join(folder, shard);
    if (!existsSync(file)) throw new CliError(`${indexFile} lists the shard ${shard}, which is not in ${folder}.`);
    out.push(file);
  }
  return out.sort();
}

/**
 * The safetensors files of a folder that hold the model: `model*.safetensors`
 * and the shards of any `*.safetensors.index.json` when there are some (so
 * the optimizer and RNG files of a saveState checkpoint are not counted),
 * else every `*.safetensors`.
 */
export function modelFilesOfFolder(folder: string): { files: string[]; skipped: string[] } {
  const names = readdirSync(folder).sort();
  const all = names.filter((n) => n.endsWith('.safetensors')).map((n) => join(folder, n));
  const chosen = new Set<string>();
  for (const n of names) {
    if (isIndex(n)) for (const f of shardsOfIndex(join(folder, n))) chosen.add(f);
    else if (isModelWeights(n)) chosen.add(join(folder, n));
  }
  if (chosen.size === 0) return { files: all, skipped: [] };
  return { files: [...chosen].sort(), skipped: all.filter((f) => !chosen.has(f)) };
}

/** Tensor shapes from safetensors files (headers only); a tensor in several files counts once. */
async function shapesFromFiles(source: string, files: string[], skipped: string[] = []): Promise<ModelShape> {
  const tensors: TensorShape[] = [];
  const seen = new Set<string>();
  for (const file of files) {
    const f = await SafetensorsFile.open(file);
    try {
      for (const name of f.offsetKeys()) {
        if (seen.has(name)) continue;
        seen.add(name);
        const info = f.info(name);
        tensors.push({ name, shape: [...info.shape], bits: safetensorsDTypeBits(info.dtype) });
      }
    } finally {
      await f.close();
    }
  }
  return { source, files, skipped, tensors, blocks: blocksOf(tensors.map((t) => t.name)) };
}

/**
 * Tensor shapes (headers only) from a safetensors file, a
 * `*.safetensors.index.json` (its shards), or a folder (its model files, see
 * {@link modelFilesOfFolder}).
 */
export async function shapesFromSafetensors(path: string): Promise<ModelShape> {
  if (statSync(path).isDirectory()) {
    const { files, skipped } = modelFilesOfFolder(path);
    if (files.length === 0) throw new CliError(`${path} holds no .safetensors file; pass a safetensors file, a folder of them, or a config.json.`);
    return shapesFromFiles(path, files, skipped);
  }
  return shapesFromFiles(path, isIndex(path) ? shardsOfIndex(path) : [path]);
}

// ---------------------------------------------------------------------------
// Shapes from config.json

type Config = Record<string, unknown>;

function num(config: Config, key: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new CliError(`config.json: "${key}" must be a non-negative integer (got ${JSON.stringify(config[key])}).`);
  }
  return v;
}

function llamaShapes(c: Config, bias: boolean): ModelShape {
  const H = num(c, 'hidden_size');
  const V = num(c, 'vocab_size');
  const L = num(c, 'num_hidden_layers');
  const nh = num(c, 'num_attention_heads');
  const kv = num(c, 'num_key_value_heads', nh);
  const hd = num(c, 'head_dim', Math.floor(H / nh));
  const I = num(c, 'intermediate_size');
  const t: TensorShape[] = [{ name: 'model.embed_tokens.weight', shape: [V, H] }];
  const blocks: string[] = [];
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}`;
    blocks.push(p);
    t.push({ name: `${p}.self_attn.q_proj.weight`, shape: [nh * hd, H] });
    if (bias) t.push({ name: `${p}.self_attn.q_proj.bias`, shape: [nh * hd] });
    t.push({ name: `${p}.self_attn.k_proj.weight`, shape: [kv * hd, H] });
    if (bias) t.push({ name: `${p}.self_attn.k_proj.bias`, shape: [kv * hd] });
    t.push({ name: `${p}.self_attn.v_proj.weight`, shape: [kv * hd, H] });
    if (bias) t.push({ name: `${p}.self_attn.v_proj.bias`, shape: [kv * hd] });
    t.push({ name: `${p}.self_attn.o_proj.weight`, shape: [H, nh * hd] });
    t.push({ name: `${p}.mlp.gate_proj.weight`, shape: [I, H] });
    t.push({ name: `${p}.mlp.up_proj.weight`, shape: [I, H] });
    t.push({ name: `${p}.mlp.down_proj.weight`, shape: [H, I] });
    t.push({ name: `${p}.input_layernorm.weight`, shape: [H] });
    t.push({ name: `${p}.post_attention_layernorm.weight`, shape: [H] });
  }
  t.push({ name: 'model.norm.weight', shape: [H] });
  // Tied embeddings are one parameter, counted once (as Accelerate's named_parameters).
  if (c.tie_word_embeddings !== true) t.push({ name: 'lm_head.weight', shape: [V, H] });
  return { source: '', tensors: t, blocks };
}

function gpt2Shapes(c: Config): ModelShape {
  const E = num(c, 'n_embd');
  const V = num(c, 'vocab_size');
  const P = num(c, 'n_positions');
  const L = num(c, 'n_layer');
  const inner = c.n_inner == null ? 4 * E : num(c, 'n_inner');
  const t: TensorShape[] = [
    { name: 'transformer.wte.weight', shape: [V, E] },
    { name: 'transformer.wpe.weight', shape: [P, E] },
  ];
  const blocks: string[] = [];
  for (let i = 0; i < L; i++) {
    const p = `transformer.h.${i}`;
    blocks.push(p);
    t.push(
      { name: `${p}.ln_1.weight`, shape: [E] },
      { name: `${p}.ln_1.bias`, shape: [E] },
      { name: `${p}.attn.c_attn.weight`, shape: [E, 3 * E] },
      { name: `${p}.attn.c_attn.bias`, shape: [3 * E] },
      { name: `${p}.attn.c_proj.weight`, shape: [E, E] },
      { name: `${p}.attn.c_proj.bias`, shape: [E] },
      { name: `${p}.ln_2.weight`, shape: [E] },
      { name: `${p}.ln_2.bias`, shape: [E] },
      { name: `${p}.mlp.c_fc.weight`, shape: [E, inner] },
      { name: `${p}.mlp.c_fc.bias`, shape: [inner] },
      { name: `${p}.mlp.c_proj.weight`, shape: [inner, E] },
      { name: `${p}.mlp.c_proj.bias`, shape: [E] },
    );
  }
  t.push({ name: 'transformer.ln_f.weight', shape: [E] }, { name: 'transformer.ln_f.bias', shape: [E] });
  // GPT2LMHeadModel's lm_head is tied to wte unless the config unties it.
  if (c.tie_word_embeddings === false) t.push({ name: 'lm_head.weight', shape: [V, E] });
  return { source: '', tensors: t, blocks };
}

function bertShapes(c: Config): ModelShape {
  const H = num(c, 'hidden_size');
  const V = num(c, 'vocab_size');
  const P = num(c, 'max_position_embeddings');
  const T = num(c, 'type_vocab_size', 2);
  const L = num(c, 'num_hidden_layers');
  const I = num(c, 'intermediate_size');
  const t: TensorShape[] = [
    { name: 'embeddings.word_embeddings.weight', shape: [V, H] },
    { name: 'embeddings.position_embeddings.weight', shape: [P, H] },
    { name: 'embeddings.token_type_embeddings.weight', shape: [T, H] },
    { name: 'embeddings.LayerNorm.weight', shape: [H] },
    { name: 'embeddings.LayerNorm.bias', shape: [H] },
  ];
  const blocks: string[] = [];
  const lin = (name: string, out: number, inp: number) => t.push({ name: `${name}.weight`, shape: [out, inp] }, { name: `${name}.bias`, shape: [out] });
  for (let i = 0; i < L; i++) {
    const p = `encoder.layer.${i}`;
    blocks.push(p);
    lin(`${p}.attention.self.query`, H, H);
    lin(`${p}.attention.self.key`, H, H);
    lin(`${p}.attention.self.value`, H, H);
    lin(`${p}.attention.output.dense`, H, H);
    t.push({ name: `${p}.attention.output.LayerNorm.weight`, shape: [H] }, { name: `${p}.attention.output.LayerNorm.bias`, shape: [H] });
    lin(`${p}.intermediate.dense`, I, H);
    lin(`${p}.output.dense`, H, I);
    t.push({ name: `${p}.output.LayerNorm.weight`, shape: [H] }, { name: `${p}.output.LayerNorm.bias`, shape: [H] });
  }
  lin('pooler.dense', H, H);
  return { source: '', tensors: t, blocks };
}

/**
 * Parameter shapes from an HF config (`BertModel` for bert; the causal-LM
 * model with its head for the others, tied embeddings counted once).
 */
export function shapesFromConfig(config: Config, source = 'config.json'): ModelShape {
  const type = config.model_type;
  let shape: ModelShape;
  switch (type) {
    case 'llama':
    case 'mistral':
      shape = llamaShapes({ tie_word_embeddings: false, ...config }, false);
      break;
    case 'qwen2':
      shape = llamaShapes({ tie_word_embeddings: false, ...config }, true);
      break;
    case 'gpt2':
      shape = gpt2Shapes(config);
      break;
    case 'bert':
      shape = bertShapes(config);
      break;
    default:
      throw new CliError(
        `config.json has model_type ${JSON.stringify(type)}; estimate-memory derives shapes for ${SUPPORTED_MODEL_TYPES.join(', ')}. ` +
          'For other models, pass the safetensors weights (file or folder): only their headers are read.',
      );
  }
  return { ...shape, source, files: [source] };
}

/**
 * Shapes of the model at `path`: a safetensors file, a safetensors index, a
 * folder of safetensors files, an HF config.json, or a folder with only a
 * config.json. Any other JSON is refused.
 */
export async function loadModelShape(path: string): Promise<ModelShape> {
  if (!existsSync(path)) throw new CliError(`${path} does not exist; pass a safetensors file, a folder of them, or an HF config.json (models are not downloaded).`);
  const st = statSync(path);
  if (st.isDirectory()) {
    const names = readdirSync(path);
    if (names.some((n) => n.endsWith('.safetensors') || isIndex(n))) return shapesFromSafetensors(path);
    if (names.includes('config.json')) return loadModelShape(join(path, 'config.json'));
    throw new CliError(`${path} holds no .safetensors file and no config.json.`);
  }
  if (path.endsWith('.json')) {
    let config: unknown;
    try {
      config = JSON.parse(readFileSync(path, 'utf8'));
    } catch (cause) {
      throw new CliError(`${path} is not valid JSON (${(cause as Error).message}).`);
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new CliError(`${path} must hold a JSON object (an HF config.json or a safetensors index).`);
    if ('weight_map' in config) return shapesFromFiles(path, shardsOfIndex(path, config));
    if (!('model_type' in config)) {
      throw new CliError(
        `${path} is neither an HF config.json (it has no "model_type") nor a safetensors index (it has no "weight_map"). ` +
          'Pass a config.json, a *.safetensors.index.json, a .safetensors file, or a folder holding them.',
      );
    }
    return shapesFromConfig(config as Config, path);
  }
  return shapesFromSafetensors(path);
}

// ---------------------------------------------------------------------------
// The estimate

const DTYPE_FACTOR: Record<EstimateDType, number> = { float32: 1, float16: 2, bfloat16: 2, int8: 4, int4: 8 };

/**
 * Sizes per dtype. Like Accelerate, everything starts from the float32 size
 * (4 bytes per parameter) and divides it: float16/bfloat16 by 2, int8 by
 * 4, int4 by 8.
 */
export function estimateMemory(model: ModelShape, dtypes: readonly EstimateDType[] = ['float32', 'float16', 'int8', 'int4']): MemoryEstimate {
  const parameters = model.tensors.reduce((a, t) => a + numel(t.shape), 0);
  // Largest layer: a block as a whole, else a leaf module (tensors grouped by their module).
  const groups = new Map<string, number>();
  for (const t of model.tensors) {
    const block = model.blocks.find((b) => t.name.startsWith(b + '.'));
    const key = block ?? (t.name.includes('.') ? t.name.slice(0, t.name.lastIndexOf('.')) : t.name);
    groups.set(key, (groups.get(key) ?? 0) + numel(t.shape));
  }
  let largestLayerName = '';
  let largestLayerParameters = 0;
  for (const [k, v] of groups) {
    if (v > largestLayerParameters) {
      largestLayerParameters = v;
      largestLayerName = k;
    }
  }
  const fp32 = parameters * 4;
  const rows = dtypes.map((dtype): EstimateRow => {
    const f = DTYPE_FACTOR[dtype];
    const training = dtype === 'float32' ? fp32 * 4 : dtype === 'float16' || dtype === 'bfloat16' ? fp32 * 2 : null;
    return { dtype, largestLayer: (largestLayerParameters * 4) / f, totalSize: fp32 / f, training };
  });
  return { source: model.source, parameters, largestLayerName, largestLayerParameters, rows };
}

/** Python's `str(round(x, 2))` for a float. */
function pyFloat(x: number): string {
  // Python rounds exact ties (x.xx5 representable in binary, e.g. 208.625) to even.
  const y = x * 100;
  const fl = Math.floor(y);
  const n = y - fl === 0.5 ? (fl % 2 === 0 ? fl : fl + 1) : Math.round(y);
  const r = n / 100;
  return Number.isInteger(r) ? `${r}.0` : String(r);
}

/**
 * Bytes in the largest 1024-based unit, as Accelerate's `convert_bytes`
 * (`236 bytes`, `1.5 KB`, `2.0 GB`); `exact` is false once a value was
 * divided (Python then prints a float, `118.0 bytes`).
 */
export function convertBytes(size: number, exact = Number.isInteger(size)): string {
  let v = size;
  let isInt = exact;
  for (const unit of ['bytes', 'KB', 'MB', 'GB', 'TB']) {
    if (v < 1024) return `${isInt ? String(v) : pyFloat(v)} ${unit}`;
    v /= 1024;
    isInt = false;
  }
  return `${pyFloat(v)} PB`;
}

/** Python's `str.center`. */
function center(s: string, width: number): string {
  const marg = width - s.length;
  if (marg <= 0) return s;
  const left = Math.floor(marg / 2) + (marg & width & 1);
  return ' '.repeat(left) + s + ' '.repeat(marg - left);
}

/** The box-drawn table of Accelerate's `create_ascii_table`. */
export function asciiTable(headers: string[], rows: string[][], title: string): string {
  const sep = '│';
  const line = '─';
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  let diff = 0;
  const makeRow = (l: string, m: string, r: string) => `${l}${widths.map((w) => line.repeat(w)).join(m)}${line.repeat(diff)}${r}`;
  let separator = makeRow('├', '┼', '┤');
  if (title.length > widths.reduce((a, b) => a + b, 0)) {
    diff = Math.abs(title.length - separator.length);
    widths[widths.length - 1] += diff;
  }
  separator = makeRow('├', '┼', '┤');
  let table = [makeRow('┌', line, '┐'), `${sep}${center(title, separator.length - 2)}${sep}`, makeRow('├', '┬', '┤')].join('\n') + '\n';
  widths[widths.length - 1] += diff;
  const fmt = (cells: string[]) => sep + cells.map((c, i) => center(c, widths[i]).padStart(widths[i])).join(sep) + sep;
  table += `${fmt(headers)}\n${separator}\n`;
  for (const r of rows) table += `${fmt(r)}\n`;
  table += `└${widths.map((w) => line.repeat(w)).join('┴')}┘`;
  return table;
}

/** The table text for an estimate (title "Memory Usage for loading `<name>`"). */
export function formatEstimate(e: MemoryEstimate, name = e.source): string {
  const rows = e.rows.map((r) => [
    r.dtype,
    convertBytes(r.largestLayer, r.dtype === 'float32'),
    convertBytes(r.totalSize, r.dtype === 'float32'),
    r.training === null ? 'N/A' : convertBytes(r.training),
  ]);
  return asciiTable(['dtype', 'Largest Layer', 'Total Size', 'Training using Adam'], rows, `Memory Usage for loading \`${name}\``);
}

/** Options of {@link runEstimateMemory}. */
export interface EstimateMemoryOptions {
  dtypes?: string[];
}

/** Runs the command: prints the parameter count, the table and the training rule. */
export async function runEstimateMemory(ctx: CliContext, path: string, options: EstimateMemoryOptions = {}): Promise<MemoryEstimate> {
  const dtypes = options.dtypes ?? ['float32', 'float16', 'int8', 'int4'];
  const bad = dtypes.filter((d) => !(ESTIMATE_DTYPES as readonly string[]).includes(d));
  if (bad.length) throw new CliError(`--dtypes: ${bad.join(', ')} not supported; choose from ${ESTIMATE_DTYPES.join(', ')}.`);
  const shape = await loadModelShape(path);
  const e = estimateMemory(shape, dtypes as EstimateDType[]);
  ctx.stdout(
    `${basename(path)}: ${e.parameters.toLocaleString('en-US')} parameters in ${shape.tensors.length} tensors; ` +
      `largest layer ${e.largestLayerName} (${e.largestLayerParameters.toLocaleString('en-US')} parameters).\n`,
  );
  if (shape.files?.length) {
    const base = statSync(path).isDirectory() ? path : dirname(path);
    const rel = (f: string) => relative(base, f) || basename(f);
    ctx.stdout(
      `Read ${shape.files.map(rel).join(', ')}` +
        (shape.skipped?.length ? `; not counted (not model weights): ${shape.skipped.map(rel).join(', ')}` : '') +
        '.\n',
    );
  }
  ctx.stdout(formatEstimate(e, path) + '\n');
  ctx.stdout('Training using Adam, batch size 1, activations excluded: float32 = 4 x the float32 size (weights, gradients, 2 Adam moments); float16/bfloat16 mixed precision = 2 x the float32 size.\n');
  return e;
}

/** Adds `accelerate estimate-memory` to the program. */
export function registerEstimateMemoryCommand(program: Command, ctx: CliContext): void {
  program
    .command('estimate-memory')
    .description('Estimate the memory a model needs to load and train, from local safetensors headers or an HF config.json (nothing is downloaded).')
    .argument(
      '<model>',
      `A safetensors file, a *.safetensors.index.json, a folder of them (a saveState folder counts its model*.safetensors only), or an HF config.json (model types: ${SUPPORTED_MODEL_TYPES.join(', ')}).`,
    )
    .option('--dtypes <dtypes...>', `dtypes to show, among ${ESTIMATE_DTYPES.join(', ')} (default: float32 float16 int8 int4).`)
    .action(async (model: string, opts: { dtypes?: string[] }) => {
      await runEstimateMemory(ctx, model, { dtypes: opts.dtypes });
    });
}
