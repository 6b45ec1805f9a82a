/**
 * Offload folders in Accelerate's format: one raw little-endian `<name>.dat`
 * file per tensor (numpy memmap layout: bfloat16 written as its int16 bits,
 * a 0-d tensor as one element) and an `index.json`
 * `{name: {"dtype": "float32", "shape": [4, 3]}}` (indented by 2, merged with
 * an existing index). An index entry may instead point into a safetensors
 * file (`{"safetensors_file": path, "weight_name": name}`), which is read in
 * place. Python's `load_offloaded_weight` reads our folders and we read its.
 *
 * Reads and writes are synchronous because they happen inside forward hooks.
 * @module
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { HostTensor, hostArrayConstructor, type DType, type HostArray } from '@accelerate/core';
import { isSafetensorsDType, safetensorsToHostDType } from '@accelerate/core/internal';
import { numel, type AnyBackend } from './tree.js';

/** One entry of `index.json`. */
export interface OffloadIndexEntry {
  /** numpy dtype name (`float32`, `int64`, `bool`, …) or `bfloat16`. */
  dtype?: string;
  shape?: number[];
  /** Path of a safetensors file holding the tensor (instead of a `.dat` file). */
  safetensors_file?: string;
  /** Tensor name inside `safetensors_file` (default: the key). */
  weight_name?: string;
}

/** `index.json` of an offload folder. */
export type OffloadIndex = Record<string, OffloadIndexEntry>;

const HOST_DTYPES = new Set<string>(['float64', 'float32', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool']);

function asDType(name: string | undefined, key: string): DType {
  if (name === undefined || !HOST_DTYPES.has(name)) {
    throw new Error(`offload index entry ${JSON.stringify(key)} has dtype ${JSON.stringify(name)}; expected one of ${[...HOST_DTYPES].join(', ')}.`);
  }
  return name as DType;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
}

function readAllAt(fd: number, target: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < target.length) {
    const n = fs.readSync(fd, target, done, Math.min(target.length - done, 1 << 30), position + done);
    if (n === 0) throw new Error(`${what} ended after ${done} of ${target.length} bytes; the offload folder is incomplete or was changed.`);
    done += n;
  }
}

/** Bytes of a backend tensor as laid out in memory (zero-copy when the backend shares cpu memory). */
export function tensorBytes(backend: AnyBackend, t: unknown): Uint8Array {
  const onCpu = backend.device(t) === 'cpu';
  const shared = onCpu ? backend.hostBytes?.(t) : undefined;
  if (shared) return shared;
  const h = backend.toHost(t);
  return new Uint8Array(h.data.buffer, h.data.byteOffset, h.data.byteLength);
}

/**
 * Write `tensor` to `<folder>/<name>.dat` and, when `index` is given, record
 * its dtype and shape there (returns the index).
 */
export function offloadWeight(backend: AnyBackend, tensor: unknown, name: string, folder: string, index?: OffloadIndex): OffloadIndex | undefined {
  const dtype = backend.dtype(tensor);
  const shape = backend.shape(tensor);
  const fd = fs.openSync(join(folder, `${name}.dat`), 'w');
  try {
    writeAll(fd, tensorBytes(backend, tensor));
  } finally {
    fs.closeSync(fd);
  }
  if (index) index[name] = { dtype, shape: [...shape] };
  return index;
}

/** Merge `index` into `<folder>/index.json` (created when missing). */
export function saveOffloadIndex(index: OffloadIndex, folder: string): void {
  if (Object.keys(index).length === 0) return;
  const file = join(folder, 'index.json');
  let current: OffloadIndex = {};
  if (fs.existsSync(file)) current = JSON.parse(fs.readFileSync(file, 'utf8')) as OffloadIndex;
  Object.assign(current, index);
  fs.writeFileSync(file, JSON.stringify(current, null, 2));
}

/** Write every tensor of `stateDict` to `folder` (created if needed) with its index. */
export function offloadStateDict(backend: AnyBackend, folder: string, stateDict: Record<string, unknown> | Map<string, unknown>): OffloadIndex {
  fs.mkdirSync(folder, { recursive: true });
  const index: OffloadIndex = {};
  const entries = stateDict instanceof Map ? [...stateDict] : Object.entries(stateDict);
  for (const [name, t] of entries) offloadWeight(backend, t, name, folder, index);
  saveOffloadIndex(index, folder);
  return index;
}

/** Read `<folder>/index.json`, or undefined when there is none. */
export function readOffloadIndex(folder: string): OffloadIndex | undefined {
  const file = join(folder, 'index.json');
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as OffloadIndex;
}

/**
 * A new backend tensor of `shape`/`dtype` whose bytes `fill` writes: straight
 * into the tensor's memory when the backend shares it, else through a host
 * buffer.
 */
export function tensorFromBytes(backend: AnyBackend, shape: number[], dtype: DType, fill: (bytes: Uint8Array) => void): unknown {
  if (backend.emptyTensor && backend.hostBytes) {
    const t = backend.emptyTensor(shape, dtype, 'cpu');
    const bytes = numel(shape) === 0 ? new Uint8Array(0) : backend.hostBytes(t);
    if (bytes) {
      fill(bytes);
      return t;
    }
    backend.dispose?.(t);
  }
  const Ctor = hostArrayConstructor(dtype) as unknown as new (n: number) => HostArray;
  const data = new Ctor(numel(shape));
  fill(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return backend.fromHost(new HostTensor(data, shape, dtype), 'cpu');
}

/** Load one `.dat` file described by `info` as a backend tensor on the cpu. */
export function loadOffloadedWeight(backend: AnyBackend, file: string, info: OffloadIndexEntry, key = file): unknown {
  const dtype = asDType(info.dtype, key);
  const shape = info.shape ?? [];
  if (backend.mapFile && numel(shape) > 0) {
    // Mapped copy-on-write: pages come from the page cache as the forward reads them.
    const m = backend.mapFile(file);
    try {
      return m.tensor(0, shape, dtype);
    } catch {
      // Fall back to reading.
    } finally {
      m.close();
    }
  }
  const fd = fs.openSync(file, 'r');
  try {
    return tensorFromBytes(backend, shape, dtype, (bytes) => readAllAt(fd, bytes, 0, file));
  } finally {
    fs.closeSync(fd);
  }
}

interface StHeader {
  dataStart: number;
  tensors: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
}

/**
 * The weights of offloaded modules: tensors kept in memory (`stateDict`)
 * and tensors in an offload folder, loaded on each access. What forward
 * hooks read to bring weights in (Accelerate's `OffloadedWeightsLoader`).
 */
export class OffloadedWeightsLoader {
  readonly stateDict: Map<string, unknown>;
  readonly saveFolder: string | undefined;
  readonly index: OffloadIndex;
  private readonly headers = new Map<string, StHeader>();

  constructor(
    private readonly backend: AnyBackend,
    options: { stateDict?: Map<string, unknown> | Record<string, unknown>; saveFolder?: string; index?: OffloadIndex } = {},
  ) {
    if (options.stateDict === undefined && options.saveFolder === undefined && options.index === undefined) {
      throw new Error('OffloadedWeightsLoader needs a stateDict, a saveFolder or an index holding the offloaded weights.');
    }
    const sd = options.stateDict;
    this.stateDict = sd instanceof Map ? sd : new Map(Object.entries(sd ?? {}));
    this.saveFolder = options.saveFolder;
    let index = options.index;
    if (index === undefined && options.saveFolder !== undefined) {
      index = readOffloadIndex(options.saveFolder);
      if (index === undefined) throw new Error(`${join(options.saveFolder, 'index.json')} does not exist; the offload folder is empty or incomplete.`);
    }
    this.index = index ?? {};
  }

  /** Every weight name, in-memory ones first. */
  keys(): string[] {
    return [...new Set([...this.stateDict.keys(), ...Object.keys(this.index)])];
  }

  has(key: string): boolean {
    return this.stateDict.has(key) || Object.prototype.hasOwnProperty.call(this.index, key);
  }

  /** True when {@link get} returns a fresh tensor the caller owns (read from disk), false when it is the kept in-memory one. */
  isFresh(key: string): boolean {
    return !this.stateDict.has(key);
  }

  /** The weight `key` as a backend tensor on the cpu. */
  get(key: string): unknown {
    const kept = this.stateDict.get(key);
    if (kept !== undefined) return kept;
    const info = this.index[key];
    if (info === undefined) throw new Error(`no offloaded weight named ${JSON.stringify(key)}.`);
    if (info.safetensors_file !== undefined) return this.readSafetensors(info.safetensors_file, info.weight_name ?? key, info.dtype);
    if (this.saveFolder === undefined) throw new Error(`offloaded weight ${JSON.stringify(key)} is in a .dat file but no saveFolder was given.`);
    return loadOffloadedWeight(this.backend, join(this.saveFolder, `${key}.dat`), info, key);
  }

  private header(file: string): StHeader {
    let h = this.headers.get(file);
    if (h) return h;
    const fd = fs.openSync(file, 'r');
    try {
      const len = new Uint8Array(8);
      readAllAt(fd, len, 0, file);
      const n = Number(new DataView(len.buffer).getBigUint64(0, true));
      const size = fs.fstatSync(fd).size;
      if (n > 100_000_000 || 8 + n > size) throw new Error(`${file}: header length ${n} is invalid for a ${size}-byte safetensors file.`);
      const text = new Uint8Array(n);
      readAllAt(fd, text, 8, file);
      const json = JSON.parse(new TextDecoder().decode(text)) as StHeader['tensors'];
      h = { dataStart: 8 + n, tensors: json };
      this.headers.set(file, h);
      return h;
    } finally {
      fs.closeSync(fd);
    }
  }

  private readSafetensors(file: string, name: string, wantDtype: string | undefined): unknown {
    const h = this.header(file);
    const e = h.tensors[name];
    if (!e || name === '__metadata__') throw new Error(`${file} has no tensor ${JSON.stringify(name)}.`);
    const dtype = isSafetensorsDType(e.dtype) ? safetensorsToHostDType(e.dtype) : undefined;
    if (dtype === undefined) throw new Error(`${file}: tensor ${JSON.stringify(name)} has dtype ${e.dtype}, which cannot be offloaded here.`);
    const [begin, end] = e.data_offsets;
    const fd = fs.openSync(file, 'r');
    let t: unknown;
    try {
      t = tensorFromBytes(this.backend, e.shape, dtype, (bytes) => {
        if (bytes.length !== end - begin) throw new Error(`${file}: tensor ${JSON.stringify(name)} has ${end - begin} bytes for ${bytes.length} expected.`);
        readAllAt(fd, bytes, h.dataStart + begin, file);
      });
    } finally {
      fs.closeSync(fd);
    }
    if (wantDtype !== undefined && wantDtype !== dtype && this.backend.cast) {
      const c = this.backend.cast(t, asDType(wantDtype, name));
      this.backend.dispose?.(t);
      t = c;
    }
    return t;
  }
}
