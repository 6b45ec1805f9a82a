/**
 * Model weights on disk in Accelerate's layout (`Accelerator.save_model` and
 * `load_checkpoint_in_model`'s file rules), independent of any backend: the
 * state dict is a record of {@link HostTensor}s.
 *
 * Layout: one `model.safetensors` (metadata `{"format": "pt"}`) when the
 * weights fit in `maxShardSize`, otherwise `model-00001-of-0000N.safetensors`
 * shards plus `model.safetensors.index.json`
 * (`{"metadata": {"total_size": N}, "weight_map": {name: file}}`, written like
 * Python's `json.dumps(indent=2, sort_keys=True)` plus a newline). Shards are
 * packed greedily in state-dict order, as huggingface_hub's
 * `split_torch_state_dict_into_shards` does.
 * @module
 */
import * as fsp from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { HostTensor } from '../tensor/host-tensor.js';
import { convertFileSizeToInt } from '../utils/size.js';
import { progressBar, type ProgressBar, type ProgressBarOptions } from '../utils/progress.js';
import {
  SafetensorsError,
  SafetensorsFile,
  compareCodePoints,
  writeSafetensors,
  type RawTensor,
} from './safetensors.js';
import { writeFileAtomic } from './atomic.js';

/** File of an unsharded safetensors checkpoint. */
export const SAFE_WEIGHTS_NAME = 'model.safetensors';
/** Index of a sharded safetensors checkpoint. */
export const SAFE_WEIGHTS_INDEX_NAME = 'model.safetensors.index.json';
/** Pattern of shard names; `{suffix}` is `""` or `-0000k-of-0000N`. */
export const SAFE_WEIGHTS_PATTERN_NAME = 'model{suffix}.safetensors';
/** PyTorch pickle checkpoint name (recognised, never read or written here). */
export const WEIGHTS_NAME = 'pytorch_model.bin';
/** Index of a sharded pickle checkpoint (recognised, never read here). */
export const WEIGHTS_INDEX_NAME = 'pytorch_model.bin.index.json';

/** Tensors a state dict can hold. */
export type StateDictTensor = HostTensor | RawTensor;

/** How a state dict is split over files. */
export interface StateDictSplit {
  /** More than one file, so an index is written. */
  isSharded: boolean;
  /** Index metadata: total bytes of all tensors. */
  metadata: { total_size: number };
  /** File name -> tensor names, in shard order. */
  filenameToTensors: Map<string, string[]>;
  /** Tensor name -> file name. */
  tensorToFilename: Map<string, string>;
}

/** Bytes a tensor takes on disk. */
export function tensorByteSize(t: StateDictTensor): number {
  return t instanceof HostTensor ? t.data.byteLength : t.bytes.byteLength;
}

function entriesOf(stateDict: Record<string, StateDictTensor> | ReadonlyMap<string, StateDictTensor>): Array<[string, StateDictTensor]> {
  return stateDict instanceof Map ? [...stateDict.entries()] : Object.entries(stateDict as Record<string, StateDictTensor>);
}

/**
 * Split a state dict into shards of at most `maxShardSize` bytes, walking it
 * in order: a tensor that does not fit closes the current shard; a tensor
 * larger than the limit gets a shard of its own, placed at the point it was
 * met while the open shard keeps filling (huggingface_hub's rule, so shard
 * numbers match Python's).
 */
export function splitStateDictIntoShards(
  stateDict: Record<string, StateDictTensor> | ReadonlyMap<string, StateDictTensor>,
  options: { maxShardSize?: number | string; filenamePattern?: string } = {},
): StateDictSplit {
  const maxShardSize = convertFileSizeToInt(options.maxShardSize ?? '10GB');
  const pattern = options.filenamePattern ?? SAFE_WEIGHTS_PATTERN_NAME;
  const shards: string[][] = [];
  let current: string[] = [];
  let currentSize = 0;
  let totalSize = 0;
  for (const [name, t] of entriesOf(stateDict)) {
    const size = tensorByteSize(t);
    totalSize += size;
    if (size > maxShardSize) {
      shards.push([name]);
      continue;
    }
    if (currentSize + size > maxShardSize) {
      shards.push(current);
      current = [];
      currentSize = 0;
    }
    current.push(name);
    currentSize += size;
  }
  if (current.length > 0) shards.push(current);

  const filenameToTensors = new Map<string, string[]>();
  const tensorToFilename = new Map<string, string>();
  const n = shards.length;
  shards.forEach((names, i) => {
    const suffix = n === 1 ? '' : `-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}`;
    const file = pattern.replace('{suffix}', suffix);
    filenameToTensors.set(file, names);
    for (const name of names) tensorToFilename.set(name, file);
  });
  return { isSharded: n > 1, metadata: { total_size: totalSize }, filenameToTensors, tensorToFilename };
}

/**
 * JSON text as Python's `json.dumps(value, indent, sort_keys=True)` writes
 * it (ASCII only, non-ASCII as lowercase `\uXXXX`), so index files are
 * byte-identical to Accelerate's. Handles objects, arrays, strings, finite
 * numbers, booleans and null.
 */
export function pythonJsonDumps(value: unknown, indent = 2): string {
  const pad = (level: number) => '\n' + ' '.repeat(indent * level);
  const str = (s: string) => {
    let out = '"';
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 0x22) out += '\\"';
      else if (c === 0x5c) out += '\\\\';
      else if (c === 0x0a) out += '\\n';
      else if (c === 0x0d) out += '\\r';
      else if (c === 0x09) out += '\\t';
      else if (c === 0x08) out += '\\b';
      else if (c === 0x0c) out += '\\f';
      else if (c < 0x20 || c > 0x7e) out += '\\u' + c.toString(16).padStart(4, '0');
      else out += s[i];
    }
    return out + '"';
  };
  const walk = (v: unknown, level: number): string => {
    if (v === null) return 'null';
    if (typeof v === 'string') return str(v);
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new TypeError(`pythonJsonDumps: ${v} cannot be written as JSON.`);
      return Number.isInteger(v) ? String(v) : JSON.stringify(v);
    }
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      return '[' + v.map((x) => pad(level + 1) + walk(x, level + 1)).join(',') + pad(level) + ']';
    }
    if (v instanceof Map) return walk(Object.fromEntries(v), level);
    if (typeof v === 'object') {
      const keys = Object.keys(v as object).sort(compareCodePoints);
      if (keys.length === 0) return '{}';
      return (
        '{' +
        keys.map((k) => pad(level + 1) + str(k) + ': ' + walk((v as Record<string, unknown>)[k], level + 1)).join(',') +
        pad(level) +
        '}'
      );
    }
    throw new TypeError(`pythonJsonDumps: a ${typeof v} cannot be written as JSON.`);
  };
  return walk(value, 0);
}

/** Options of {@link saveModelFiles}. */
export interface SaveModelOptions {
  /** Largest shard, bytes or a size string (`"5GB"`, `"200KB"`, `"1GiB"`); default `"10GB"`. */
  maxShardSize?: number | string;
  /** Must stay `true`: only safetensors is written (see {@link saveModelFiles}). */
  safeSerialization?: boolean;
  /** Only the main process writes; others compute the layout and touch nothing. Default `true`. */
  isMainProcess?: boolean;
  /**
   * Progress bar in bytes. Default: for big checkpoints only (see
   * {@link checkpointNeedsProgress}), and only where a bar can draw (main
   * process, TTY, not CI). `true` shows it whatever the size, `false` never;
   * options pass through to {@link progressBar} (`enabled: true` draws even
   * off a terminal).
   */
  progress?: boolean | ProgressBarOptions;
}

/** What {@link saveModelFiles} wrote. */
export interface SaveModelResult {
  /** Weight files of this save, in shard order (base names). */
  files: string[];
  /** Base name of the index, when sharded. */
  indexFile?: string;
  /** Tensor name -> file. */
  weightMap: Record<string, string>;
  /** Bytes of all tensors. */
  totalSize: number;
  /** Names dropped because they alias an earlier tensor's memory (tied weights), as Accelerate does. */
  removedSharedTensors: string[];
  /** Files of an earlier save removed because this save does not produce them (base names). */
  deletedStaleFiles: string[];
  /** False when nothing was written because this is not the main process. */
  written: boolean;
}

const SHARD_FILE = /^model-\d{5}-of-\d{5}\.safetensors$/;

/** Checkpoints above this many bytes get a progress bar when saved or loaded (256 MiB). */
export const CHECKPOINT_PROGRESS_MIN_BYTES = 256 * 1024 ** 2;
/** Checkpoints of at least this many files get a progress bar when saved or loaded. */
export const CHECKPOINT_PROGRESS_MIN_FILES = 8;

/** Whether saving or loading `bytes` in `files` files is long enough to deserve a progress bar. */
export function checkpointNeedsProgress(bytes: number, files: number): boolean {
  return bytes > CHECKPOINT_PROGRESS_MIN_BYTES || files >= CHECKPOINT_PROGRESS_MIN_FILES;
}

/** A byte-unit bar for a checkpoint, or a disabled one when it is small or `progress` is false. @internal */
export function checkpointBar(progress: boolean | ProgressBarOptions | undefined, label: string, bytes: number, files: number): ProgressBar {
  const forced = progress === true || (typeof progress === 'object' && progress.enabled === true);
  const extra = typeof progress === 'object' ? progress : {};
  const wanted = progress !== false && (forced || checkpointNeedsProgress(bytes, files));
  return progressBar({ label, unit: 'B', ...extra, total: bytes, enabled: wanted ? extra.enabled : false });
}

/**
 * Drop later names whose data is the very same memory as an earlier one
 * (tied weights, e.g. an embedding reused as the LM head), keeping the first
 * name, as Accelerate's `clean_state_dict_for_safetensors` does. A backend
 * state dict shows a tie by returning one tensor object for both names (core
 * converts it to one HostTensor). Loading such a file strictly works on a
 * backend that re-ties the dropped name (libtorch's `Module.loadStateDict`
 * accepts it) and in Python (`load_checkpoint_in_model`, transformers' `tie_weights`).
 */
export function removeSharedTensors(
  stateDict: Record<string, StateDictTensor> | ReadonlyMap<string, StateDictTensor>,
): { kept: Record<string, StateDictTensor>; removed: string[] } {
  const { kept, removed } = dropSharedTensors(entriesOf(stateDict));
  const out: Record<string, StateDictTensor> = {};
  for (const [k, t] of kept) Object.defineProperty(out, k, { value: t, enumerable: true, writable: true, configurable: true });
  return { kept: out, removed };
}

/** Drop later names whose data is the very same memory as an earlier one (tied weights). */
function dropSharedTensors(entries: Array<[string, StateDictTensor]>): { kept: Array<[string, StateDictTensor]>; removed: string[] } {
  const seen = new Map<ArrayBufferLike, Array<{ offset: number; length: number }>>();
  const kept: Array<[string, StateDictTensor]> = [];
  const removed: string[] = [];
  for (const [name, t] of entries) {
    const view = t instanceof HostTensor ? t.data : t.bytes;
    if (view.byteLength === 0) {
      kept.push([name, t]);
      continue;
    }
    const list = seen.get(view.buffer) ?? [];
    if (list.some((r) => r.offset === view.byteOffset && r.length === view.byteLength)) {
      removed.push(name);
      continue;
    }
    list.push({ offset: view.byteOffset, length: view.byteLength });
    seen.set(view.buffer, list);
    kept.push([name, t]);
  }
  return { kept, removed };
}

async function statOrUndefined(path: string) {
  try {
    return await fsp.stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Save a state dict the way `Accelerator.save_model` lays it out: a single
 * `model.safetensors`, or shards `model-0000k-of-0000N.safetensors` and
 * `model.safetensors.index.json` when the tensors exceed `maxShardSize`
 * (greedy in-order packing; a tensor bigger than the limit gets its own shard).
 * Every file is written atomically (temp file, fsync, rename).
 *
 * Differences from Python, deliberate: a `dir` that is a file throws (Python
 * logs and returns); shard files of an earlier save that this save does not
 * rewrite are deleted (Python's cleanup never matches `.safetensors` shards),
 * as are a stale `model.safetensors` when saving sharded and a stale index
 * when saving unsharded, so a folder never holds two versions; an empty state
 * dict writes an empty `model.safetensors` (Python writes nothing). Tensors
 * that are the same memory (tied weights) are saved once, like Accelerate's
 * `clean_state_dict_for_safetensors`.
 *
 * @throws Error when `safeSerialization` is false: pickle `.bin` files are a
 * Python-only format.
 */
export async function saveModelFiles(
  stateDict: Record<string, StateDictTensor> | ReadonlyMap<string, StateDictTensor>,
  dir: string,
  options: SaveModelOptions = {},
): Promise<SaveModelResult> {
  const { maxShardSize = '10GB', safeSerialization = true, isMainProcess = true } = options;
  if (safeSerialization !== true) {
    throw new Error(
      'saveModelFiles: safeSerialization=false asks for PyTorch pickle files (pytorch_model.bin), which accelerate-ts does not write: ' +
        'pickle is Python-specific and loading it can run arbitrary code. Use safeSerialization: true (the default); ' +
        'Python reads the resulting model.safetensors with safetensors.torch.load_file or Accelerate.load_checkpoint_in_model.',
    );
  }
  const st = await statOrUndefined(dir);
  if (st && !st.isDirectory()) {
    throw new Error(`saveModelFiles: provided path (${dir}) should be a directory, not a file. Pass a folder path; it is created if missing.`);
  }
  const { kept, removed } = dropSharedTensors(entriesOf(stateDict));
  const split = splitStateDictIntoShards(new Map(kept), { maxShardSize, filenamePattern: SAFE_WEIGHTS_PATTERN_NAME });
  if (split.filenameToTensors.size === 0) {
    split.filenameToTensors.set(SAFE_WEIGHTS_NAME, []);
  }
  const files = [...split.filenameToTensors.keys()];
  const weightMap: Record<string, string> = {};
  for (const [k, f] of split.tensorToFilename) Object.defineProperty(weightMap, k, { value: f, enumerable: true, writable: true, configurable: true });
  const result: SaveModelResult = {
    files,
    weightMap,
    totalSize: split.metadata.total_size,
    removedSharedTensors: removed,
    deletedStaleFiles: [],
    written: false,
  };
  if (split.isSharded) result.indexFile = SAFE_WEIGHTS_INDEX_NAME;
  if (!isMainProcess) return result;

  await fsp.mkdir(dir, { recursive: true });
  const byName = new Map(kept);
  const bar = checkpointBar(options.progress, `saving ${files.length > 1 ? `${files.length} shards` : SAFE_WEIGHTS_NAME}`, result.totalSize, files.length);
  try {
    for (const [file, names] of split.filenameToTensors) {
      const shard = new Map(names.map((n) => [n, byName.get(n)!]));
      await writeSafetensors(join(dir, file), shard, { format: 'pt' });
      bar.update(names.reduce((sum, n) => sum + tensorByteSize(byName.get(n)!), 0), file);
    }
  } finally {
    bar.close(); // also on failure, so the error starts on a fresh line
  }
  if (split.isSharded) {
    const index = { metadata: split.metadata, weight_map: weightMap };
    await writeFileAtomic(join(dir, SAFE_WEIGHTS_INDEX_NAME), pythonJsonDumps(index, 2) + '\n');
  }

  // Remove what an earlier save left and this one did not rewrite (after writing, so a crash leaves the new files).
  const keep = new Set(files);
  for (const name of await fsp.readdir(dir)) {
    const stale =
      (SHARD_FILE.test(name) && !keep.has(name)) ||
      (split.isSharded && name === SAFE_WEIGHTS_NAME) ||
      (!split.isSharded && name === SAFE_WEIGHTS_INDEX_NAME);
    if (!stale) continue;
    const full = join(dir, name);
    const s = await statOrUndefined(full);
    if (!s?.isFile()) continue;
    await fsp.rm(full, { force: true });
    result.deletedStaleFiles.push(name);
  }
  result.written = true;
  return result;
}

/** Options of {@link loadModelFiles}. */
export interface LoadModelOptions {
  /**
   * Check `__metadata__.format` as Accelerate's `load_state_dict` does:
   * missing is accepted, anything but `"pt"` is an error. Default `true`.
   */
  checkFormat?: boolean;
  /** Load only these tensor names (others are skipped without reading their bytes). */
  keys?: Iterable<string>;
  /** Progress bar, as {@link SaveModelOptions.progress} (by default only for big checkpoints, on a terminal). */
  progress?: boolean | ProgressBarOptions;
}

/** Which files make up a checkpoint, as {@link resolveCheckpointFiles} finds them. */
export interface CheckpointFiles {
  /** Weight files to read, in load order. */
  files: string[];
  /** The index file, when the checkpoint is sharded. */
  indexFile?: string;
  /** Tensor name -> file (full path), from the index. */
  weightMap?: Map<string, string>;
}

function pickleError(path: string): Error {
  return new Error(
    `${path} is a PyTorch pickle checkpoint, which accelerate-ts cannot read (pickle is Python-specific and can run code). ` +
      'Convert it once in Python: `from safetensors.torch import save_file; save_file(torch.load(path), "model.safetensors")`.',
  );
}

/**
 * Find the weight files of a checkpoint with `load_checkpoint_in_model`'s
 * rules: a file (a `.json` is an index), or a folder holding
 * `model.safetensors`, or else exactly one `*.index.json` (none or several is
 * an error). Shards are the sorted unique files of the index's `weight_map`.
 */
export async function resolveCheckpointFiles(checkpoint: string): Promise<CheckpointFiles> {
  const st = await statOrUndefined(checkpoint);
  let indexFile: string | undefined;
  if (st?.isFile()) {
    if (checkpoint.endsWith('.json')) indexFile = checkpoint;
    else {
      if (checkpoint.endsWith('.bin')) throw pickleError(checkpoint);
      return { files: [checkpoint] };
    }
  } else if (st?.isDirectory()) {
    const names = await fsp.readdir(checkpoint);
    if (names.includes(SAFE_WEIGHTS_NAME)) return { files: [join(checkpoint, SAFE_WEIGHTS_NAME)] };
    const indexes = names.filter((f) => f.endsWith('.index.json'));
    if (indexes.length === 0) {
      if (names.includes(WEIGHTS_NAME)) throw pickleError(join(checkpoint, WEIGHTS_NAME));
      throw new Error(`${checkpoint} is not a folder containing a \`.index.json\` file or a ${SAFE_WEIGHTS_NAME} file.`);
    }
    if (indexes.length > 1) {
      throw new Error(`${checkpoint} contains more than one \`.index.json\` file (${indexes.sort().join(', ')}); delete the irrelevant ones.`);
    }
    indexFile = join(checkpoint, indexes[0]);
  } else {
    throw new Error(
      `${checkpoint} does not exist (no such file or folder). Pass the folder saveModel / save_model / save_pretrained wrote (holding model.safetensors, ` +
        'or shards and model.safetensors.index.json), a .safetensors file, or an .index.json file; a relative path is resolved from the current directory ' +
        `(${process.cwd()}).`,
    );
  }

  const text = await fsp.readFile(indexFile, 'utf8');
  let index: unknown;
  try {
    index = JSON.parse(text);
  } catch (cause) {
    throw new Error(`${indexFile} is not valid JSON (${(cause as Error).message}); it should be {"metadata": ..., "weight_map": {name: file}}.`, { cause });
  }
  if (typeof index === 'object' && index !== null && !Array.isArray(index) && 'weight_map' in index) index = (index as { weight_map: unknown }).weight_map;
  if (typeof index !== 'object' || index === null || Array.isArray(index)) {
    throw new Error(`${indexFile}: "weight_map" must be an object mapping tensor names to file names.`);
  }
  const folder = dirname(indexFile);
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(index as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '' || isAbsolute(file) || normalize(file).split(sep).includes('..') || file.split('/').includes('..')) {
      throw new Error(`${indexFile}: weight_map entry ${JSON.stringify(name)} -> ${JSON.stringify(file)} must be a file name inside the checkpoint folder.`);
    }
    if (file.endsWith('.bin')) throw pickleError(join(folder, file));
    weightMap.set(name, join(folder, file));
  }
  const files = [...new Set(Object.values(index as Record<string, string>))].sort(compareCodePoints).map((f) => join(folder, f));
  return { files, indexFile, weightMap };
}

/**
 * Read a checkpoint's tensors: `checkpoint` is a safetensors file, an
 * `.index.json`, or a folder (see {@link resolveCheckpointFiles}). Shards are
 * opened one at a time and only tensor bytes are read. For sharded
 * checkpoints every name of the index must be found in its shard, and a name
 * may appear in only one shard.
 */
export async function loadModelFiles(checkpoint: string, options: LoadModelOptions = {}): Promise<Record<string, HostTensor>> {
  const { checkFormat = true } = options;
  const wanted = options.keys ? new Set(options.keys) : undefined;
  const { files, weightMap } = await resolveCheckpointFiles(checkpoint);
  const out: Record<string, HostTensor> = {};
  const origin = new Map<string, string>();
  // File sizes are what the bar counts: cheap to know up front, and what the disk actually reads.
  const sizes = options.progress === false ? files.map(() => 0) : await Promise.all(files.map(async (f) => (await statOrUndefined(f))?.size ?? 0)); // a missing file fails below, with its own error
  const bar = checkpointBar(options.progress, `loading ${files.length > 1 ? `${files.length} shards` : 'checkpoint'}`, sizes.reduce((a, b) => a + b, 0), files.length);
  try {
    for (const [i, file] of files.entries()) {
      // With a key filter and an index, shards holding none of the keys are not even opened.
      if (wanted && weightMap && ![...weightMap].some(([n, w]) => w === file && wanted.has(n))) {
        bar.update(sizes[i]);
        continue;
      }
      const f = await SafetensorsFile.open(file);
      try {
        if (checkFormat) {
          const format = f.metadata?.format;
          if (f.metadata !== undefined && format !== undefined && format !== 'pt') {
            throw new Error(
              `${file} was saved with format ${JSON.stringify(format)}; only "pt" checkpoints are loaded (pass checkFormat: false to read it anyway).`,
            );
          }
          if (f.metadata !== undefined && format === undefined) {
            throw new Error(`${file} has metadata without a "format" entry; save it with {"format": "pt"} or pass checkFormat: false.`);
          }
        }
        if (weightMap) {
          for (const [name, where] of weightMap) {
            if (where === file && !f.has(name)) {
              throw new SafetensorsError('TENSOR_NOT_FOUND', `the index maps ${JSON.stringify(name)} to this file but it holds no such tensor; the checkpoint is incomplete.`, {
                path: file,
                tensor: name,
              });
            }
          }
        }
        const names = f.offsetKeys().filter((n) => !wanted || wanted.has(n));
        for (const name of names) {
          const prev = origin.get(name);
          if (prev !== undefined) {
            throw new Error(`tensor ${JSON.stringify(name)} is in both ${prev} and ${file}; a checkpoint must hold each tensor once.`);
          }
          origin.set(name, file);
        }
        const tensors = await f.readMany(names);
        for (const name of names) Object.defineProperty(out, name, { value: tensors[name], enumerable: true, writable: true, configurable: true });
      } finally {
        await f.close();
      }
      bar.update(sizes[i], basename(file));
    }
  } finally {
    bar.close(); // also on failure, so the error starts on a fresh line
  }
  if (wanted) {
    const missing = [...wanted].filter((n) => !origin.has(n));
    if (missing.length) throw new Error(`loadModelFiles: ${checkpoint} has no tensor(s) ${missing.map((m) => JSON.stringify(m)).join(', ')}.`);
  }
  return out;
}
