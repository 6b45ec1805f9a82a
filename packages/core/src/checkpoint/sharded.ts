/**
 * Sharded tensor sets: the checkpoint format of sharded strategies (FSDP),
 * which every rank writes without communication and any world size reads
 * back ("resharding on load").
 *
 * Layout, inside a checkpoint folder (folder names follow Python
 * Accelerate's: `pytorch_model_fsdp_<i>` for model i, `optimizer_<i>` for
 * optimizer i):
 *
 * ```text
 * pytorch_model_fsdp_0/
 * ├── index.json                      written by the main process
 * ├── shard-0-of-2.safetensors        rank 0's pieces
 * └── shard-1-of-2.safetensors        rank 1's pieces
 * ```
 *
 * Every tensor is cut into flat pieces: a rank holds one contiguous range
 * `[offset, offset + numel)` of the tensor's row-major flattened elements.
 * A shard file stores each of its rank's non-empty pieces as a 1-D tensor
 * under the tensor's own name; its safetensors `__metadata__` holds
 * `format: "pt"`, `accelerate_sharded: "1"` and `pieces`, a JSON string
 * `{name: {shape, dtype, offset, numel}}` (`shape` and `dtype` of the full
 * tensor). Empty pieces (numel 0) are left out of both the tensors and
 * `pieces`: a rank holding nothing of a tensor does not mention it.
 *
 * `index.json` is `{format: "accelerate-ts-sharded", version: 1, worldSize,
 * files: ["shard-0-of-2.safetensors", …], tensors: {name: {shape, dtype}},
 * extra?}` with `extra` any JSON (optimizer param groups, step counts).
 *
 * Reading checks that the pieces of every tensor cover it exactly (no gap,
 * no overlap) and agree on shape and dtype, then reads lazily: only file
 * headers at open, and byte ranges of just the requested elements. Files
 * read through a {@link CheckpointReader} (or from a folder with a
 * `manifest.json`) are checked against the manifest's size and sha256 —
 * streamed, the first time a file is needed — before any of their bytes are
 * used.
 * @module
 */
import * as fsp from 'node:fs/promises';
import { basename, dirname, join, posix, resolve, sep } from 'node:path';
import type { CheckpointReader, CheckpointWriter } from '../interfaces/checkpoint.js';
import { HostTensor, dtypeElementBytes, hostArrayConstructor, type DType, type HostArray } from '../tensor/host-tensor.js';
import { convertFileSizeToInt } from '../utils/size.js';
import type { ProgressBarOptions } from '../utils/progress.js';
import { pathExists, writeFileAtomic } from './atomic.js';
import { CheckpointError, MANIFEST_NAME, readManifest, verifyFile, type CheckpointManifest } from './manifest.js';
import { SAFETENSORS_DTYPES, SafetensorsFile, compareCodePoints, hostDTypeToSafetensors, swapBytes, type SafetensorsTensorInfo } from './safetensors.js';
import { SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_PATTERN_NAME, checkpointBar, pythonJsonDumps } from './save-model.js';

/** `format` of a sharded set's `index.json`. */
export const SHARDED_FORMAT = 'accelerate-ts-sharded';
/** Version of the sharded layout this code writes (and the highest it reads). */
export const SHARDED_VERSION = 1;
/** Name of a sharded set's index, inside its folder. */
export const SHARDED_INDEX_NAME = 'index.json';

/** Name of rank `rank`'s file in a set written by `worldSize` ranks: `shard-<rank>-of-<worldSize>.safetensors`. */
export function shardedFileName(rank: number, worldSize: number): string {
  return `shard-${rank}-of-${worldSize}.safetensors`;
}

/** Folder of model `index`'s sharded weights, Python Accelerate's name: `pytorch_model_fsdp_<index>`. */
export function shardedModelFolder(index: number): string {
  return `pytorch_model_fsdp_${index}`;
}

/** Folder of optimizer `index`'s sharded state, Python Accelerate's name: `optimizer_<index>`. */
export function shardedOptimizerFolder(index: number): string {
  return `optimizer_${index}`;
}

/**
 * The even split of `numel` flat elements over `worldSize` ranks that FSDP
 * uses (chunks of `ceil(numel / worldSize)`, the last ranks' possibly short
 * or empty): rank `rank`'s `[offset, offset + numel)`. Any split works for
 * {@link writeShardedTensors}; this one is a convenient default.
 */
export function evenShardRange(numel: number, rank: number, worldSize: number): { offset: number; numel: number } {
  if (!Number.isSafeInteger(numel) || numel < 0) throw new RangeError(`evenShardRange: numel must be a non-negative integer, got ${numel}.`);
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`evenShardRange: worldSize must be a positive integer, got ${worldSize}.`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new RangeError(`evenShardRange: rank must be in [0, ${worldSize}), got ${rank}.`);
  const chunk = Math.ceil(numel / worldSize);
  const offset = Math.min(rank * chunk, numel);
  return { offset, numel: Math.min(chunk, numel - offset) };
}

/** One rank's piece of a tensor: elements `[offset, offset + data.numel)` of the full tensor flattened row-major. */
export interface ShardedPiece {
  /** The tensor's name (its key in the index and in the shard file). */
  name: string;
  /** Shape of the full tensor. */
  shape: number[];
  /** dtype of the full tensor; `data` must have it too. */
  dtype: DType;
  /** First flat element of the full tensor this piece holds. */
  offset: number;
  /** The elements, flat (a tensor of another shape is taken flattened; a 0-element piece is allowed and not stored). */
  data: HostTensor;
}

/** Full shape and dtype of one tensor of a set. */
export interface ShardedTensorInfo {
  shape: number[];
  dtype: DType;
}

/** Contents of a sharded set's `index.json`. */
export interface ShardedIndex {
  format: typeof SHARDED_FORMAT;
  version: number;
  /** Number of ranks that wrote the set (and of files). */
  worldSize: number;
  /** Shard file names (relative to the set's folder), rank order. */
  files: string[];
  /** Every tensor of the set, in the writer's order. */
  tensors: Record<string, ShardedTensorInfo>;
  /** Non-tensor data (any JSON), when given. */
  extra?: unknown;
}

/** What one shard file says about one of its pieces (its `pieces` metadata entry). */
interface PieceMeta {
  shape: number[];
  dtype: DType;
  offset: number;
  numel: number;
}

const HOST_DTYPES: ReadonlySet<string> = new Set<DType>(['float32', 'float64', 'float16', 'bfloat16', 'int8', 'int16', 'int32', 'int64', 'uint8', 'bool']);

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

const numelOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const shapeText = (shape: readonly number[]) => `[${shape.join(', ')}]`;
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
const isShape = (s: unknown): s is number[] => Array.isArray(s) && s.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0);
const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

function checkFolder(what: string, folder: string): string {
  const norm = typeof folder === 'string' ? folder.replace(/\/+$/, '') : '';
  if (norm === '' || norm.includes('\\') || norm.startsWith('/') || posix.normalize(norm) !== norm || norm.split('/').some((p) => p === '..' || p === '.' || p.startsWith('.'))) {
    throw new TypeError(`${what}: folder ${JSON.stringify(folder)} must be a relative folder name inside the checkpoint, e.g. "pytorch_model_fsdp_0" or "optimizer_0".`);
  }
  return norm;
}

// ---------------------------------------------------------------------------
// Writing

/**
 * Write this rank's pieces of a sharded tensor set into `folder` of the
 * checkpoint being saved: `<folder>/shard-<rank>-of-<world>.safetensors`
 * (through `writer.writeTensors`, so durably and listed in the manifest),
 * plus, on the main process, `<folder>/index.json` built from `index`.
 *
 * Every rank must call it for the set (from a participant with
 * `writers: 'every'`), each with its own pieces and the same `index`; no
 * communication happens. At most one piece per tensor per rank; pieces of
 * the ranks together must cover every tensor of `index.tensors` exactly,
 * which only a reader can check ({@link openShardedTensors} refuses sets
 * with gaps or overlaps).
 *
 * @param writer the participant's checkpoint writer.
 * @param folder the set's folder, relative (`pytorch_model_fsdp_0`, `optimizer_0`).
 * @param pieces this rank's pieces; 0-element pieces are accepted and not stored.
 * @param index every tensor's full shape and dtype (identical on every rank), and `extra` JSON for the index.
 * @throws TypeError / RangeError for a piece that does not fit its tensor (named).
 */
export async function writeShardedTensors(
  writer: CheckpointWriter,
  folder: string,
  pieces: ShardedPiece[],
  index: { tensors: Record<string, { shape: number[]; dtype: DType }>; extra?: unknown },
): Promise<void> {
  const what = 'writeShardedTensors';
  const dir = checkFolder(what, folder);
  if (index === null || typeof index !== 'object' || index.tensors === null || typeof index.tensors !== 'object') {
    throw new TypeError(`${what}: index.tensors must be a record of name -> {shape, dtype} of every tensor of the set.`);
  }
  const tensors: Record<string, ShardedTensorInfo> = {};
  for (const [name, info] of Object.entries(index.tensors)) {
    if (!info || !isShape(info.shape) || !HOST_DTYPES.has(info.dtype)) {
      throw new TypeError(`${what}: index.tensors[${JSON.stringify(name)}] must be {shape: non-negative integers, dtype: a DType}, got ${JSON.stringify(info)}.`);
    }
    setOwn(tensors, name, { shape: [...info.shape], dtype: info.dtype });
  }
  const out: Record<string, HostTensor> = {};
  const meta: Record<string, PieceMeta> = {};
  const seen = new Set<string>();
  for (const p of pieces) {
    const q = JSON.stringify(p?.name);
    if (!p || typeof p.name !== 'string') throw new TypeError(`${what}: every piece needs a string name, got ${JSON.stringify(p)}.`);
    if (seen.has(p.name)) throw new TypeError(`${what}: rank ${writer.processIndex} passes two pieces of ${q}; a rank holds one contiguous range per tensor.`);
    seen.add(p.name);
    const full = Object.hasOwn(tensors, p.name) ? tensors[p.name] : undefined;
    if (!full) throw new TypeError(`${what}: piece ${q} is not in index.tensors; list every tensor of the set there (same on every rank).`);
    if (!isShape(p.shape) || !sameShape(p.shape, full.shape) || p.dtype !== full.dtype) {
      throw new TypeError(`${what}: piece ${q} says ${JSON.stringify(p.shape)} ${p.dtype} but index.tensors says ${shapeText(full.shape)} ${full.dtype}.`);
    }
    if (!(p.data instanceof HostTensor)) throw new TypeError(`${what}: piece ${q} must carry its elements as a HostTensor in data.`);
    if (p.data.dtype !== full.dtype) throw new TypeError(`${what}: piece ${q} holds ${p.data.dtype} data but the tensor is ${full.dtype}; convert it first.`);
    if (!(p.data.data instanceof hostArrayConstructor(full.dtype))) {
      throw new TypeError(`${what}: piece ${q} says dtype ${full.dtype} but holds a ${p.data.data.constructor.name}; build it with a ${hostArrayConstructor(full.dtype).name}.`);
    }
    const total = numelOf(full.shape);
    const n = p.data.numel;
    if (!isCount(p.offset) || p.offset + n > total) {
      throw new RangeError(`${what}: piece ${q} of rank ${writer.processIndex} covers elements [${p.offset}, ${p.offset + n}) but the tensor ${shapeText(full.shape)} has ${total}.`);
    }
    if (n === 0) continue;
    setOwn(out, p.name, p.data.shape.length === 1 ? p.data : new HostTensor(p.data.data, [n], p.data.dtype));
    setOwn(meta, p.name, { shape: [...full.shape], dtype: full.dtype, offset: p.offset, numel: n });
  }
  let extraJson: string | undefined;
  if (index.extra !== undefined) {
    try {
      extraJson = JSON.stringify(index.extra);
    } catch (err) {
      throw new TypeError(`${what}: index.extra must be JSON-able (${(err as Error).message}).`);
    }
  }
  await writer.writeTensors(`${dir}/${shardedFileName(writer.processIndex, writer.numProcesses)}`, out, { accelerate_sharded: '1', pieces: JSON.stringify(meta) });
  if (writer.isMainProcess) {
    const files = Array.from({ length: writer.numProcesses }, (_, r) => shardedFileName(r, writer.numProcesses));
    const doc: ShardedIndex = { format: SHARDED_FORMAT, version: SHARDED_VERSION, worldSize: writer.numProcesses, files, tensors };
    if (extraJson !== undefined) doc.extra = JSON.parse(extraJson);
    await writer.writeFile(`${dir}/${SHARDED_INDEX_NAME}`, JSON.stringify(doc, null, 2) + '\n');
  }
}

// ---------------------------------------------------------------------------
// Reading

/**
 * A sharded tensor set opened for reading (see {@link openShardedTensors}).
 * Reads return fresh arrays; any world size can read any range.
 */
export interface ShardedTensorSet {
  /** World size that wrote the set. */
  readonly worldSize: number;
  /** Every tensor's full shape and dtype, in the writer's order. */
  readonly tensors: Record<string, { shape: number[]; dtype: DType }>;
  /** The index's `extra` (undefined when none was written). */
  readonly extra: unknown;
  /** Elements `[offset, offset + numel)` of `name` flattened, as a 1-D tensor, assembled from whichever files hold them (any world size). */
  read(name: string, offset: number, numel: number): Promise<HostTensor>;
  /** The whole tensor, shaped. */
  readFull(name: string): Promise<HostTensor>;
}

/** One stored piece, located. */
interface Located {
  file: number;
  offset: number;
  numel: number;
  info: SafetensorsTensorInfo;
}

interface Opened {
  /** Checkpoint folder (what errors name). */
  root: string;
  /** The set's folder, relative to root. */
  folder: string;
  index: ShardedIndex;
  /** Per tensor: its pieces sorted by offset, covering it exactly. */
  pieces: Map<string, Located[]>;
  /** Verify file i before its bytes are used (no-op without a manifest). */
  verify: (file: number) => Promise<void>;
}

function parseIndex(root: string, folder: string, text: string): ShardedIndex {
  const file = `${folder}/${SHARDED_INDEX_NAME}`;
  const path = join(root, file);
  let doc: ShardedIndex;
  try {
    doc = JSON.parse(text) as ShardedIndex;
  } catch (err) {
    throw new CheckpointError(`${path} is not valid JSON (${(err as Error).message}); the sharded set is damaged.`, root, file);
  }
  const bad = (why: string) => new CheckpointError(`${path} is not a valid sharded-set index: ${why}.`, root, file);
  if (doc === null || typeof doc !== 'object' || doc.format !== SHARDED_FORMAT) throw bad(`expected "format": "${SHARDED_FORMAT}"`);
  if (!Number.isInteger(doc.version) || doc.version < 1) throw bad(`"version" must be a positive integer, got ${JSON.stringify(doc.version)}`);
  if (doc.version > SHARDED_VERSION) {
    throw new CheckpointError(`${path} has sharded-set version ${doc.version}, but this @accelerate/core reads versions 1..${SHARDED_VERSION}. Upgrade @accelerate/core to read it.`, root, file);
  }
  if (!Number.isInteger(doc.worldSize) || doc.worldSize < 1) throw bad(`"worldSize" must be a positive integer, got ${JSON.stringify(doc.worldSize)}`);
  const expected = Array.from({ length: doc.worldSize }, (_, r) => shardedFileName(r, doc.worldSize));
  if (!Array.isArray(doc.files) || doc.files.length !== expected.length || doc.files.some((f, i) => f !== expected[i])) {
    throw bad(`"files" must be ${JSON.stringify(expected)} for worldSize ${doc.worldSize}, got ${JSON.stringify(doc.files)}`);
  }
  if (doc.tensors === null || typeof doc.tensors !== 'object' || Array.isArray(doc.tensors)) throw bad('"tensors" must be an object {name: {shape, dtype}}');
  for (const [name, info] of Object.entries(doc.tensors)) {
    if (!info || !isShape(info.shape) || !HOST_DTYPES.has(info.dtype)) throw bad(`tensor ${JSON.stringify(name)} must be {shape: non-negative integers, dtype: a DType}, got ${JSON.stringify(info)}`);
  }
  return doc;
}

/** Sets (folders holding an index.json) found in `root`, from the manifest or the file system. */
async function setFoldersIn(root: string, manifest: CheckpointManifest | undefined): Promise<string[]> {
  if (manifest) {
    return Object.keys(manifest.files)
      .filter((f) => f.endsWith(`/${SHARDED_INDEX_NAME}`))
      .map((f) => f.slice(0, -SHARDED_INDEX_NAME.length - 1))
      .sort();
  }
  const entries = await fsp.readdir(root, { withFileTypes: true }).catch(() => []);
  const found: string[] = [];
  for (const e of entries) if (e.isDirectory() && (await pathExists(join(root, e.name, SHARDED_INDEX_NAME)))) found.push(e.name);
  return found.sort();
}

async function shardFilesOnDisk(path: string): Promise<string[]> {
  const names = await fsp.readdir(path).catch(() => [] as string[]);
  return names.filter((n) => /^shard-\d+-of-\d+\.safetensors$/.test(n)).sort();
}

async function notASet(root: string, folder: string, manifest: CheckpointManifest | undefined): Promise<CheckpointError> {
  const path = join(root, folder);
  const file = `${folder}/${SHARDED_INDEX_NAME}`;
  const shards = await shardFilesOnDisk(path);
  if (shards.length > 0) {
    return new CheckpointError(
      `${path} holds shard files (${shards.join(', ')}) but no ${SHARDED_INDEX_NAME}: the main process's index of the sharded set was not written, so the save did not finish and the checkpoint is incomplete. Load another checkpoint.`,
      root,
      file,
    );
  }
  const sets = await setFoldersIn(root, manifest);
  return new CheckpointError(
    `${path} is not a sharded tensor set (it has no ${SHARDED_INDEX_NAME}). A sharded set is a folder such as 'pytorch_model_fsdp_0' (model 0) or 'optimizer_0' (optimizer 0) inside a checkpoint saved with a sharded strategy (FSDP); ` +
      (sets.length ? `${root} has: ${sets.map((s) => `'${s}'`).join(', ')}.` : `${root} has none.`),
    root,
    file,
  );
}

function parsePieces(root: string, folder: string, fileIndex: number, file: SafetensorsFile, index: ShardedIndex, out: Map<string, Located[]>): void {
  const rel = `${folder}/${index.files[fileIndex]}`;
  const path = join(root, rel);
  const bad = (why: string) => new CheckpointError(`${path} is not a valid shard of the sharded set: ${why}. The checkpoint is damaged; load another one.`, root, rel);
  const md = file.metadata;
  if (!md || md.accelerate_sharded !== '1' || typeof md.pieces !== 'string') throw bad('its safetensors metadata lacks accelerate_sharded: "1" and pieces');
  let pieces: Record<string, PieceMeta>;
  try {
    pieces = JSON.parse(md.pieces) as Record<string, PieceMeta>;
  } catch (err) {
    throw bad(`its pieces metadata is not valid JSON (${(err as Error).message})`);
  }
  if (pieces === null || typeof pieces !== 'object' || Array.isArray(pieces)) throw bad('its pieces metadata is not an object');
  for (const name of file.keys()) if (!Object.hasOwn(pieces, name)) throw bad(`it holds tensor ${JSON.stringify(name)}, which its pieces metadata does not describe`);
  for (const [name, p] of Object.entries(pieces)) {
    const q = JSON.stringify(name);
    const full = Object.hasOwn(index.tensors, name) ? index.tensors[name] : undefined;
    if (!full) throw bad(`it holds a piece of ${q}, which ${SHARDED_INDEX_NAME} does not list`);
    if (!p || !isShape(p.shape) || !isCount(p.offset) || !isCount(p.numel)) throw bad(`the pieces entry of ${q} must be {shape, dtype, offset, numel}, got ${JSON.stringify(p)}`);
    if (!sameShape(p.shape, full.shape) || p.dtype !== full.dtype) {
      throw new CheckpointError(
        `Sharded set ${join(root, folder)} disagrees on ${q}: ${SHARDED_INDEX_NAME} says ${shapeText(full.shape)} ${full.dtype}, ${index.files[fileIndex]} (rank ${fileIndex}) says ${JSON.stringify(p.shape)} ${p.dtype}. The files come from different saves; the checkpoint is damaged.`,
        root,
        rel,
      );
    }
    const total = numelOf(full.shape);
    if (p.offset + p.numel > total) throw bad(`its piece of ${q} covers [${p.offset}, ${p.offset + p.numel}) but the tensor has ${total} elements`);
    if (p.numel === 0) {
      if (file.has(name)) throw bad(`it stores a tensor for the empty piece of ${q}`);
      continue;
    }
    if (!file.has(name)) throw bad(`its pieces metadata lists ${q} but the file has no tensor of that name`);
    const info = file.info(name);
    const want = hostDTypeToSafetensors(full.dtype);
    if (info.dtype !== want || info.shape.length !== 1 || info.shape[0] !== p.numel) {
      throw bad(`its piece of ${q} is stored as ${info.dtype} ${shapeText(info.shape)}, but ${p.numel} elements of ${full.dtype} (${want} [${p.numel}]) were expected`);
    }
    let list = out.get(name);
    if (!list) out.set(name, (list = []));
    list.push({ file: fileIndex, offset: p.offset, numel: p.numel, info });
  }
}

function checkCoverage(root: string, folder: string, index: ShardedIndex, pieces: Map<string, Located[]>): void {
  for (const [name, full] of Object.entries(index.tensors)) {
    const total = numelOf(full.shape);
    const list = (pieces.get(name) ?? []).sort((a, b) => a.offset - b.offset || a.file - b.file);
    if (!pieces.has(name)) pieces.set(name, list);
    const held = () => (list.length ? list.map((p) => `rank ${p.file} [${p.offset}, ${p.offset + p.numel})`).join(', ') : 'no rank holds any of it');
    let at = 0;
    for (const p of list) {
      if (p.offset > at) {
        throw new CheckpointError(
          `Sharded set ${join(root, folder)} is incomplete: elements [${at}, ${p.offset}) of ${JSON.stringify(name)} (${shapeText(full.shape)} ${full.dtype}, ${total} elements) are in no shard file (${held()}). Load another checkpoint.`,
          root,
          folder,
        );
      }
      if (p.offset < at) {
        throw new CheckpointError(
          `Sharded set ${join(root, folder)} is damaged: pieces of ${JSON.stringify(name)} overlap at elements [${p.offset}, ${Math.min(at, p.offset + p.numel)}) (${held()}); each element must be in exactly one shard file.`,
          root,
          folder,
        );
      }
      at = p.offset + p.numel;
    }
    if (at < total) {
      throw new CheckpointError(
        `Sharded set ${join(root, folder)} is incomplete: elements [${at}, ${total}) of ${JSON.stringify(name)} (${shapeText(full.shape)} ${full.dtype}, ${total} elements) are in no shard file (${held()}). Load another checkpoint.`,
        root,
        folder,
      );
    }
  }
}

async function openSet(source: CheckpointReader | string, folderArg: string): Promise<Opened> {
  const folder = checkFolder('openShardedTensors', folderArg);
  let root: string;
  let manifest: CheckpointManifest | undefined;
  let indexText: string;
  if (typeof source === 'string') {
    root = source;
    if (await pathExists(join(root, MANIFEST_NAME))) manifest = await readManifest(root);
    const indexPath = join(root, folder, SHARDED_INDEX_NAME);
    if (!(await pathExists(indexPath))) throw await notASet(root, folder, manifest);
    if (manifest) await verifyFile(root, manifest, `${folder}/${SHARDED_INDEX_NAME}`);
    indexText = await fsp.readFile(indexPath, 'utf8');
  } else {
    root = source.dir;
    const own = (source as { manifest?: CheckpointManifest }).manifest;
    manifest = own && typeof own === 'object' && own.files ? own : await readManifest(root);
    if (!(await source.exists(`${folder}/${SHARDED_INDEX_NAME}`))) throw await notASet(root, folder, manifest);
    indexText = new TextDecoder().decode(await source.readFile(`${folder}/${SHARDED_INDEX_NAME}`));
  }
  const index = parseIndex(root, folder, indexText);

  // Every rank's file must be there (and listed, when there is a manifest).
  const present: number[] = [];
  const missing: number[] = [];
  for (let r = 0; r < index.worldSize; r++) {
    const rel = `${folder}/${index.files[r]}`;
    const there = (await pathExists(join(root, rel))) && (!manifest || Object.hasOwn(manifest.files, rel));
    (there ? present : missing).push(r);
  }
  if (missing.length > 0) {
    const names = missing.map((r) => `${folder}/${index.files[r]}`);
    throw new CheckpointError(
      `Sharded set ${join(root, folder)} is incomplete: ${names.join(', ')} ${missing.length === 1 ? 'is' : 'are'} missing${manifest ? ' (or not listed in the manifest)' : ''}. ` +
        `It was written by ${index.worldSize} ranks; files exist for ${present.length ? `rank${present.length > 1 ? 's' : ''} ${present.join(', ')}` : 'no rank'}. ` +
        `The checkpoint is incomplete (a rank's save did not finish, or files were moved or deleted); load another checkpoint.`,
      root,
      names[0],
    );
  }

  const verified = new Map<number, Promise<void>>();
  const verify = (i: number): Promise<void> => {
    if (!manifest) return Promise.resolve();
    let p = verified.get(i);
    if (!p) verified.set(i, (p = verifyFile(root, manifest, `${folder}/${index.files[i]}`)));
    return p;
  };

  const pieces = new Map<string, Located[]>();
  for (let r = 0; r < index.worldSize; r++) {
    const rel = `${folder}/${index.files[r]}`;
    let file: SafetensorsFile;
    try {
      file = await SafetensorsFile.open(join(root, rel));
    } catch (err) {
      await verify(r); // a damaged file: the manifest's account of it, when there is one
      throw new CheckpointError(`${join(root, rel)} cannot be read as a shard (${(err as Error).message}). The checkpoint is damaged; load another one.`, root, rel);
    }
    try {
      parsePieces(root, folder, r, file, index, pieces);
    } finally {
      await file.close();
    }
  }
  checkCoverage(root, folder, index, pieces);
  return { root, folder, index, pieces, verify };
}

/** Read exactly `target.length` bytes at `position`. */
async function readAt(fh: fsp.FileHandle, target: Uint8Array, position: number, path: string): Promise<void> {
  for (let done = 0; done < target.length; ) {
    const want = Math.min(1 << 30, target.length - done);
    const { bytesRead } = await fh.read(target, done, want, position + done);
    if (bytesRead === 0) throw new Error(`${path} ended while reading its bytes [${position}, ${position + target.length}); it was truncated or changed after it was opened.`);
    done += bytesRead;
  }
}


class ShardedSet implements ShardedTensorSet {
  readonly worldSize: number;
  readonly tensors: Record<string, { shape: number[]; dtype: DType }>;
  readonly extra: unknown;

  constructor(private readonly s: Opened) {
    this.worldSize = s.index.worldSize;
    this.tensors = s.index.tensors;
    this.extra = s.index.extra;
  }

  private full(name: string, what: string): ShardedTensorInfo {
    const info = typeof name === 'string' && Object.hasOwn(this.tensors, name) ? this.tensors[name] : undefined;
    if (!info) {
      const all = Object.keys(this.tensors);
      throw new RangeError(
        `${what}: no tensor ${JSON.stringify(name)} in sharded set ${join(this.s.root, this.s.folder)}; it has ${all.length}${all.length ? `: ${all.slice(0, 8).map((n) => JSON.stringify(n)).join(', ')}${all.length > 8 ? ', …' : ''}` : ''}.`,
      );
    }
    return info;
  }

  /**
   * Call `sink(bytes, at)` with the raw little-endian bytes of elements
   * `[offset, offset + numel)` of `name`, in order, in chunks of at most
   * `chunkBytes` (`at`: byte position of the chunk within the range).
   * @internal
   */
  async copyRange(name: string, offset: number, numel: number, sink: (bytes: Uint8Array, at: number) => Promise<void> | void, chunkBytes = Infinity, reuse?: Uint8Array): Promise<void> {
    const full = this.full(name, 'read');
    const total = numelOf(full.shape);
    if (!isCount(offset) || !isCount(numel) || offset + numel > total) {
      throw new RangeError(`read: elements [${offset}, ${offset + numel}) of ${JSON.stringify(name)} are outside the tensor (${shapeText(full.shape)}, ${total} elements); pass integers with offset + numel <= ${total}.`);
    }
    const eb = dtypeElementBytes(full.dtype);
    const end = offset + numel;
    for (const p of this.s.pieces.get(name) ?? []) {
      const s = Math.max(offset, p.offset);
      const e = Math.min(end, p.offset + p.numel);
      if (s >= e) continue;
      await this.s.verify(p.file);
      const rel = `${this.s.folder}/${this.s.index.files[p.file]}`;
      const path = join(this.s.root, rel);
      const fh = await fsp.open(path, 'r');
      try {
        const step = Math.max(1, Math.floor(Math.min(chunkBytes, 1 << 30) / eb)) * eb;
        for (let b = (s - p.offset) * eb, stop = (e - p.offset) * eb; b < stop; b += step) {
          const len = Math.min(step, stop - b);
          const buf = reuse && reuse.length >= len ? reuse.subarray(0, len) : new Uint8Array(len);
          await readAt(fh, buf, p.info.byteOffset + b, path);
          await sink(buf, (p.offset - offset) * eb + b);
        }
      } catch (err) {
        if (err instanceof CheckpointError) throw err;
        throw new CheckpointError(`${path}: ${(err as Error).message}`, this.s.root, rel);
      } finally {
        await fh.close();
      }
    }
  }

  async read(name: string, offset: number, numel: number): Promise<HostTensor> {
    const full = this.full(name, 'read');
    if (!isCount(numel)) throw new RangeError(`read: numel must be a non-negative integer, got ${numel}.`);
    const Ctor = hostArrayConstructor(full.dtype) as unknown as { new (n: number): HostArray };
    const data = new Ctor(numel);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    await this.copyRange(name, offset, numel, (chunk, at) => {
      bytes.set(chunk, at);
    });
    if (!LITTLE_ENDIAN) swapBytes(bytes, dtypeElementBytes(full.dtype));
    return new HostTensor(data, [numel], full.dtype);
  }

  async readFull(name: string): Promise<HostTensor> {
    const full = this.full(name, 'readFull');
    const flat = await this.read(name, 0, numelOf(full.shape));
    return new HostTensor(flat.data, full.shape, full.dtype);
  }
}

/**
 * Open the sharded set in `folder` of a checkpoint: parse its index and the
 * headers of every shard file, and check that the files are all there, agree
 * on every tensor's shape and dtype, and cover every tensor exactly. Tensor
 * bytes are read later, by {@link ShardedTensorSet.read}, and only those asked
 * for.
 *
 * @param source the participant's {@link CheckpointReader} during `loadState`
 * (files are checked against the manifest's size and sha256, each the first
 * time it is read), or a checkpoint folder path (checked the same way when it
 * has a `manifest.json`; headers are validated either way).
 * @param folder the set's folder inside it (`pytorch_model_fsdp_0`, `optimizer_0`).
 * @throws CheckpointError naming the folder or file: not a sharded set (with
 * the sets the checkpoint has), a missing shard file (with the ranks whose
 * files exist), pieces that leave a gap or overlap, files disagreeing on a
 * tensor's shape or dtype, damaged files.
 */
export async function openShardedTensors(source: CheckpointReader | string, folder: string): Promise<ShardedTensorSet> {
  return new ShardedSet(await openSet(source, folder));
}

// ---------------------------------------------------------------------------
// Merging (merge_fsdp_weights)

/** Options of {@link mergeShardedWeights}. */
export interface MergeShardedWeightsOptions {
  /** Largest output file, bytes or a size string (`"5GB"`); above it the output is sharded like `saveModelFiles`. Default `"10GB"`. */
  maxShardSize?: number | string;
  /** Delete `checkpointDir` after the output is written (Python's `remove_checkpoint_dir`). Default false. */
  removeCheckpointDir?: boolean;
  /** Progress bar, as `saveModelFiles` takes it (default: for big outputs, on a terminal). */
  progress?: boolean | ProgressBarOptions;
}

/** What {@link mergeShardedWeights} did. */
export interface MergeShardedWeightsResult {
  /** The sharded set's folder that was merged. */
  source: string;
  /** World size that wrote it. */
  worldSize: number;
  /** Output files written (base names, in `outputPath`), shard order. */
  files: string[];
  /** `model.safetensors.index.json` when the output is sharded. */
  indexFile?: string;
  /** Number of tensors. */
  tensors: number;
  /** Bytes of all tensors. */
  totalSize: number;
  /** Files of an earlier output removed because this one does not produce them. */
  deletedStaleFiles: string[];
  /** True when `checkpointDir` was deleted. */
  removedCheckpointDir: boolean;
}

const MODEL_SET = /^pytorch_model_fsdp_\d+$/;
const OUT_SHARD = /^model-\d{5}-of-\d{5}\.safetensors$/;

/** The sharded set `dir` names: the set itself, or the one model set of a checkpoint folder. */
async function findModelSet(dir: string): Promise<{ root: string; folder: string }> {
  const what = 'mergeShardedWeights';
  const st = await fsp.stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new CheckpointError(
      `${what}: ${dir} is not a folder. Pass a sharded checkpoint folder such as 'ckpt/pytorch_model_fsdp_0' (model 0) or 'ckpt/optimizer_0', or the checkpoint folder holding one model set.`,
      dir,
    );
  }
  if (await pathExists(join(dir, SHARDED_INDEX_NAME))) return { root: dirname(resolve(dir)), folder: basename(resolve(dir)) };
  const sets = await setFoldersIn(dir, undefined);
  const models = sets.filter((s) => MODEL_SET.test(s));
  if (models.length === 1) return { root: dir, folder: models[0] };
  if (models.length > 1) {
    throw new CheckpointError(
      `${what}: ${dir} holds ${models.length} sharded model sets (${models.join(', ')}); pass the one to merge, e.g. ${join(dir, models[0])}.`,
      dir,
    );
  }
  const shards = await shardFilesOnDisk(dir);
  if (shards.length > 0) throw await notASet(dirname(resolve(dir)), basename(resolve(dir)), undefined);
  throw new CheckpointError(
    `${what}: ${dir} is not a sharded checkpoint folder and holds no sharded model set. Pass a folder such as 'pytorch_model_fsdp_0' or 'optimizer_0' (as Python's merge_fsdp_weights expects), ` +
      `or the checkpoint folder holding it${sets.length ? `; ${dir} has: ${sets.map((s) => `'${s}'`).join(', ')}` : ''}.`,
    dir,
  );
}

/** Safetensors header bytes (length prefix + padded JSON) for tensors of known dtype and shape, laid out as `serializeSafetensors` does. */
function headerFor(entries: Array<{ name: string; dtype: DType; shape: readonly number[] }>, metadata: Record<string, string>): { head: Uint8Array; order: string[]; dataSize: number } {
  const rank = (d: DType) => SAFETENSORS_DTYPES.indexOf(hostDTypeToSafetensors(d));
  const sorted = [...entries].sort((a, b) => rank(b.dtype) - rank(a.dtype) || compareCodePoints(a.name, b.name));
  const keys = Object.keys(metadata).sort(compareCodePoints);
  const parts = [`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`];
  let offset = 0;
  for (const e of sorted) {
    const end = offset + numelOf(e.shape) * dtypeElementBytes(e.dtype);
    parts.push(`${JSON.stringify(e.name)}:{"dtype":"${hostDTypeToSafetensors(e.dtype)}","shape":[${e.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  head.fill(0x20, 8 + json.length);
  return { head, order: sorted.map((e) => e.name), dataSize: offset };
}

/**
 * Python's `merge_fsdp_weights`: merge the sharded model weights in
 * `checkpointDir` into full tensors in `outputPath/model.safetensors`
 * (original names, shapes and dtypes; metadata `format: pt`, so Python's
 * safetensors / transformers load it), or, above `maxShardSize`,
 * `model-0000k-of-0000N.safetensors` plus `model.safetensors.index.json` as
 * `saveModelFiles` writes them.
 *
 * `checkpointDir` is a sharded set's folder (`ckpt/pytorch_model_fsdp_0`) or
 * a checkpoint folder holding exactly one model set. Tensors stream from the
 * shard files to the output in bounded chunks (memory does not grow with the
 * model); every output file is written atomically (temporary file, fsync,
 * rename). Files of an earlier output in `outputPath` that this one does not
 * produce are removed afterwards, as `saveModelFiles` does. When the
 * checkpoint has a `manifest.json`, files are checked against it first.
 *
 * @throws CheckpointError for a folder that is not a sharded set (hinting at
 * `pytorch_model_fsdp_0` / `optimizer_0`) or an incomplete or damaged one.
 */
export async function mergeShardedWeights(checkpointDir: string, outputPath: string, options: MergeShardedWeightsOptions = {}): Promise<MergeShardedWeightsResult> {
  const what = 'mergeShardedWeights';
  const { root, folder } = await findModelSet(checkpointDir);
  const source = join(root, folder);
  const out = resolve(outputPath);
  const removeDir = resolve(checkpointDir);
  if (options.removeCheckpointDir && (out === removeDir || out.startsWith(removeDir + sep))) {
    throw new CheckpointError(`${what}: the output folder ${out} is inside ${removeDir}, which removeCheckpointDir would delete; write the output elsewhere.`, checkpointDir);
  }
  const outStat = await fsp.stat(out).catch(() => undefined);
  if (outStat && !outStat.isDirectory()) throw new CheckpointError(`${what}: output path ${out} is a file; pass a folder (it is created if missing).`, checkpointDir);
  const set = (await openShardedTensors(root, folder)) as ShardedSet;

  // Shards: huggingface_hub's greedy in-order rule (as splitStateDictIntoShards), from sizes alone.
  const max = convertFileSizeToInt(options.maxShardSize ?? '10GB');
  const names = Object.keys(set.tensors);
  const sizeOf = (n: string) => numelOf(set.tensors[n].shape) * dtypeElementBytes(set.tensors[n].dtype);
  const groups: string[][] = [];
  let current: string[] = [];
  let currentSize = 0;
  let totalSize = 0;
  for (const n of names) {
    const size = sizeOf(n);
    totalSize += size;
    if (size > max) {
      groups.push([n]);
      continue;
    }
    if (currentSize + size > max) {
      groups.push(current);
      current = [];
      currentSize = 0;
    }
    current.push(n);
    currentSize += size;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  const sharded = groups.length > 1;
  const files = groups.map((_, i) =>
    SAFE_WEIGHTS_PATTERN_NAME.replace('{suffix}', sharded ? `-${String(i + 1).padStart(5, '0')}-of-${String(groups.length).padStart(5, '0')}` : ''),
  );

  await fsp.mkdir(out, { recursive: true });
  const bar = checkpointBar(options.progress, `merging ${folder} into ${sharded ? `${files.length} shards` : SAFE_WEIGHTS_NAME}`, totalSize, files.length);
  const weightMap: Record<string, string> = {};
  const CHUNK = 64 * 1024 * 1024;
  let scratch: Uint8Array | undefined;
  try {
    for (let g = 0; g < groups.length; g++) {
      const { head, order } = headerFor(
        groups[g].map((n) => ({ name: n, ...set.tensors[n] })),
        { format: 'pt' },
      );
      await writeFileAtomic(join(out, files[g]), async (fh) => {
        let pos = 0;
        const write = async (bytes: Uint8Array) => {
          for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done, pos + done)).bytesWritten;
          pos += bytes.length;
        };
        await write(head);
        for (const n of order) {
          const numel = numelOf(set.tensors[n].shape);
          scratch ??= new Uint8Array(Math.min(CHUNK, Math.max(totalSize, 8)));
          await set.copyRange(n, 0, numel, (bytes) => write(bytes), CHUNK, scratch);
          bar.update(sizeOf(n), n);
        }
      });
      for (const n of groups[g]) setOwn(weightMap, n, files[g]);
    }
  } finally {
    bar.close();
  }
  if (sharded) {
    await writeFileAtomic(join(out, SAFE_WEIGHTS_INDEX_NAME), pythonJsonDumps({ metadata: { total_size: totalSize }, weight_map: weightMap }, 2) + '\n');
  }
  const deletedStaleFiles: string[] = [];
  const keep = new Set(files);
  for (const name of await fsp.readdir(out)) {
    const stale = (OUT_SHARD.test(name) && !keep.has(name)) || (sharded && name === SAFE_WEIGHTS_NAME) || (!sharded && name === SAFE_WEIGHTS_INDEX_NAME);
    if (!stale || !(await fsp.stat(join(out, name))).isFile()) continue;
    await fsp.rm(join(out, name), { force: true });
    deletedStaleFiles.push(name);
  }
  let removedCheckpointDir = false;
  if (options.removeCheckpointDir) {
    await fsp.rm(removeDir, { recursive: true, force: true });
    removedCheckpointDir = true;
  }
  return {
    source,
    worldSize: set.worldSize,
    files,
    ...(sharded ? { indexFile: SAFE_WEIGHTS_INDEX_NAME } : {}),
    tensors: names.length,
    totalSize,
    deletedStaleFiles,
    removedCheckpointDir,
  };
}
