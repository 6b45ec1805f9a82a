/**
 * Helpers over nested data (arrays, plain objects and Maps whose leaves are
 * tensors), as Accelerate's `utils/operations.py` provides them: map a
 * function over the tensors, move a batch to a device, find its batch size,
 * concatenate, slice and pad batches.
 *
 * Leaves are recognised with a {@link TensorOps}; a {@link HostTensor} is
 * always recognised too (handled by {@link hostTensorOps}), so batches built
 * on the host before a backend existed keep working.
 * @module
 */
import { HostTensor, type DType } from '../tensor/host-tensor.js';
import { hostTensorOps, hostTensorToNumbers, type TensorOps } from './tensor-ops.js';

/**
 * The type of `D` after replacing every leaf of type `In` with `Out`
 * (arrays, tuples, plain objects and Maps keep their shape).
 */
export type ReplaceLeaves<D, In, Out> = D extends In
  ? Out
  : D extends Map<infer K, infer V>
    ? Map<K, ReplaceLeaves<V, In, Out>>
    : D extends readonly unknown[]
      ? { [I in keyof D]: ReplaceLeaves<D[I], In, Out> }
      : D extends object
        ? { [K in keyof D]: ReplaceLeaves<D[K], In, Out> }
        : D;

/** Options of {@link recursivelyApply}. */
export interface RecursivelyApplyOptions {
  /** Which leaves `fn` is applied to. Its name appears in the error of `errorOnOtherType`. */
  testType: (x: unknown) => boolean;
  /** Throw a TypeError on a leaf that fails `testType` instead of leaving it unchanged. */
  errorOnOtherType?: boolean;
}

/**
 * True for objects treated as mappings: plain objects (`{}` literals,
 * `Object.create(null)`). Class instances (tensors, user objects) are leaves.
 */
export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** A short type name for error messages: `number`, `string`, `null`, `HostTensor`, … */
export function describeType(x: unknown): string {
  if (x === null) return 'null';
  if (typeof x === 'object' || typeof x === 'function') {
    const name = (x as { constructor?: { name?: string } }).constructor?.name;
    if (name) return name;
    return typeof x;
  }
  return typeof x;
}

function sameKindObject(source: object): Record<string, unknown> {
  return Object.create(Object.getPrototypeOf(source)) as Record<string, unknown>;
}

/**
 * Apply `fn` to every leaf of a nested structure that passes
 * `options.testType`, returning a structure of the same kind (arrays stay
 * arrays, plain objects keep their prototype, Maps stay Maps). Other leaves
 * are returned unchanged, or rejected with a TypeError when
 * `errorOnOtherType` is set.
 *
 * @example
 * recursivelyApply((t: HostTensor) => t.shape, { a: t1, b: [t2] }, { testType: isHostTensor })
 */
export function recursivelyApply<In, Out, D>(
  fn: (leaf: In) => Out,
  data: D,
  options: RecursivelyApplyOptions,
): ReplaceLeaves<D, In, Out> {
  return applyInner(fn, data, options) as ReplaceLeaves<D, In, Out>;
}

function applyInner(fn: (leaf: any) => unknown, data: unknown, options: RecursivelyApplyOptions): unknown {
  if (Array.isArray(data)) return data.map((item) => applyInner(fn, item, options));
  if (data instanceof Map) {
    const out = new Map();
    for (const [k, v] of data) out.set(k, applyInner(fn, v, options));
    return out;
  }
  if (isPlainObject(data)) {
    const out = sameKindObject(data);
    for (const k of Object.keys(data)) out[k] = applyInner(fn, data[k], options);
    return out;
  }
  if (options.testType(data)) return fn(data);
  if (options.errorOnOtherType) {
    throw new TypeError(
      `Unsupported types (${describeType(data)}) passed to \`${fn.name || '<anonymous>'}\`. ` +
        `Only nested arrays/objects/Maps of objects that are valid for \`${options.testType.name || '<anonymous>'}\` should be passed.`,
    );
  }
  return data;
}

/** True for a {@link HostTensor}. */
export function isHostTensor(x: unknown): x is HostTensor {
  return x instanceof HostTensor;
}

/**
 * The ops that handle `x`: `ops` when it recognises `x`, {@link hostTensorOps}
 * for a HostTensor, else undefined (not a tensor).
 */
export function opsFor<T>(x: unknown, ops?: TensorOps<T>): TensorOps<any> | undefined {
  if (ops && ops.isTensor(x)) return ops;
  if (x instanceof HostTensor) return hostTensorOps;
  return undefined;
}

/** A testType that accepts the tensors of `ops` and HostTensors. */
function tensorTest(ops?: TensorOps<unknown>): (x: unknown) => boolean {
  const isTensor = (x: unknown): boolean => opsFor(x, ops) !== undefined;
  return isTensor;
}

/** Options of {@link sendToDevice}. */
export interface SendToDeviceOptions {
  /** Dict keys (at any depth) whose values are left where they are. */
  skipKeys?: string | readonly string[];
  /** Passed to the backend's `toDevice`. */
  nonBlocking?: boolean;
}

/**
 * Move every tensor of a nested structure to `device`. Tensors of `ops` go
 * through `ops.toDevice`; a HostTensor becomes a tensor of `ops` on `device`
 * (`ops.fromHost`); other objects with a `to(device)` method are moved with
 * it; everything else is returned untouched. Values under `skipKeys` are not
 * moved. Arrays, plain objects and Maps keep their kind.
 */
export function sendToDevice<D>(data: D, device: string, ops?: TensorOps<any>, options: SendToDeviceOptions = {}): D {
  const skip = new Set<string>(
    options.skipKeys === undefined ? [] : typeof options.skipKeys === 'string' ? [options.skipKeys] : options.skipKeys,
  );
  const move = (x: unknown): unknown => {
    if (ops && ops.isTensor(x)) return ops.toDevice(x, device, { nonBlocking: options.nonBlocking ?? false });
    if (x instanceof HostTensor) return (ops ?? hostTensorOps).fromHost(x, device);
    if (Array.isArray(x)) return x.map(move);
    if (x instanceof Map) {
      const out = new Map();
      for (const [k, v] of x) out.set(k, typeof k === 'string' && skip.has(k) ? v : move(v));
      return out;
    }
    if (isPlainObject(x)) {
      const out = sameKindObject(x);
      for (const k of Object.keys(x)) out[k] = skip.has(k) ? x[k] : move(x[k]);
      return out;
    }
    if (typeof x === 'object' && x !== null && typeof (x as { to?: unknown }).to === 'function') {
      return (x as { to(device: string): unknown }).to(device);
    }
    return x;
  };
  return move(data) as D;
}

/**
 * The batch size of a nested structure: dim 0 of its first tensor leaf
 * (first element of arrays, first key of objects and Maps).
 * @throws RangeError on an empty array/object/Map; TypeError when the first leaf is not a tensor (or is 0-d).
 */
export function findBatchSize(data: unknown, ops?: TensorOps<any>): number {
  if (Array.isArray(data)) {
    if (data.length === 0) throw new RangeError('findBatchSize: cannot find the batch size of an empty array.');
    return findBatchSize(data[0], ops);
  }
  if (data instanceof Map) {
    if (data.size === 0) throw new RangeError('findBatchSize: cannot find the batch size of an empty Map.');
    return findBatchSize(data.values().next().value, ops);
  }
  if (isPlainObject(data)) {
    const keys = Object.keys(data);
    if (keys.length === 0) throw new RangeError('findBatchSize: cannot find the batch size of an empty object.');
    return findBatchSize(data[keys[0]], ops);
  }
  const o = opsFor(data, ops);
  if (!o) throw new TypeError(`findBatchSize: can only find the batch size of tensors but got ${describeType(data)}.`);
  const shape = o.shape(data);
  if (shape.length === 0) {
    throw new TypeError('findBatchSize: the first tensor is 0-dimensional and has no batch dimension.');
  }
  return shape[0];
}

/** {@link findBatchSize}, returning undefined instead of throwing. */
export function ignorantFindBatchSize(data: unknown, ops?: TensorOps<any>): number | undefined {
  try {
    return findBatchSize(data, ops);
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) return undefined;
    throw e;
  }
}

/** Device of the first tensor found in a nested structure (depth first), or undefined when there is none. */
export function findDevice(data: unknown, ops?: TensorOps<any>): string | undefined {
  if (Array.isArray(data) || data instanceof Map) {
    for (const item of data.values()) {
      const d = findDevice(item, ops);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  if (isPlainObject(data)) {
    for (const k of Object.keys(data)) {
      const d = findDevice(data[k], ops);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  const o = opsFor(data, ops);
  return o ? o.device(data) : undefined;
}

/** Options of {@link concatenate}. */
export interface ConcatenateOptions {
  /** Dimension to concatenate on (default 0). */
  dim?: number;
  /** Ops for backend tensors (HostTensors are always handled). */
  ops?: TensorOps<any>;
}

/**
 * Concatenate a list of same-shaped structures into one structure whose
 * tensors are concatenated along `dim`. A list holding a single non-tensor
 * item returns that item as is.
 * @throws TypeError when the items are neither structures nor tensors.
 */
export function concatenate(data: readonly unknown[], options: ConcatenateOptions = {}): any {
  const dim = options.dim ?? 0;
  if (!Array.isArray(data) || data.length === 0) {
    throw new TypeError('concatenate: expects a non-empty array of batches.');
  }
  const first = data[0];
  if (Array.isArray(first)) {
    return first.map((_, i) => concatenate(data.map((d) => (d as unknown[])[i]), options));
  }
  if (first instanceof Map) {
    const out = new Map();
    for (const k of first.keys()) out.set(k, concatenate(data.map((d) => (d as Map<unknown, unknown>).get(k)), options));
    return out;
  }
  if (isPlainObject(first)) {
    const out = sameKindObject(first);
    for (const k of Object.keys(first)) out[k] = concatenate(data.map((d) => (d as Record<string, unknown>)[k]), options);
    return out;
  }
  const o = opsFor(first, options.ops);
  if (o) return o.cat(data as unknown[], dim);
  if (data.length === 1) return first;
  throw new TypeError(`concatenate: can only concatenate tensors but got ${describeType(first)}.`);
}

/**
 * Every tensor of a nested structure as nested arrays of numbers (a 0-d
 * tensor becomes a number). float16/bfloat16 are decoded, int64 goes through
 * `Number`, bool becomes 0/1.
 */
export function listify(data: unknown, ops?: TensorOps<any>): any {
  const toList = (t: unknown): unknown => {
    const host = opsFor(t, ops)!.toHost(t);
    return nest(hostTensorToNumbers(host), host.shape);
  };
  return recursivelyApply(toList, data, { testType: tensorTest(ops) });
}

function nest(values: number[], shape: readonly number[]): unknown {
  if (shape.length === 0) return values[0];
  const build = (offset: number, d: number): unknown[] => {
    const n = shape[d];
    const out = new Array<unknown>(n);
    if (d === shape.length - 1) {
      for (let i = 0; i < n; i++) out[i] = values[offset + i];
      return out;
    }
    const stride = shape.slice(d + 1).reduce((a, b) => a * b, 1);
    for (let i = 0; i < n; i++) out[i] = build(offset + i * stride, d + 1);
    return out;
  };
  return build(0, 0);
}

/**
 * Rows `[start, end)` (dim 0) of every tensor in a nested structure, with
 * Python slice rules: negative indices count from the end, bounds are
 * clamped. Non-tensor leaves are returned unchanged.
 */
export function sliceTensors<D>(data: D, start: number, end: number | undefined, ops?: TensorOps<any>): D {
  const slice = (t: unknown): unknown => {
    const o = opsFor(t, ops)!;
    const n = o.shape(t)[0];
    const [s, e] = clampSlice(start, end, n);
    return o.narrow(t, 0, s, e - s);
  };
  return recursivelyApply(slice, data, { testType: tensorTest(ops) }) as D;
}

function clampSlice(start: number, end: number | undefined, n: number): [number, number] {
  const norm = (i: number) => Math.min(Math.max(i < 0 ? i + n : i, 0), n);
  const s = norm(start);
  const e = end === undefined ? n : norm(end);
  return [s, Math.max(s, e)];
}

/** Options of {@link padInputTensors}. */
export interface PadInputTensorsOptions {
  /** Dimension to pad (default 0). */
  dim?: number;
  /** Ops for backend tensors (HostTensors are always handled). */
  ops?: TensorOps<any>;
}

/**
 * Pad every tensor of a batch along `dim` with zero rows so it splits evenly
 * over `numProcesses`: the new size is the smallest multiple of
 * `numProcesses` that is at least `batchSize` (and at least `numProcesses`).
 *
 * This matches every case in Accelerate's tests (1→2 and 3→4 on 2
 * processes, 4→6 on 3, 61→66 on 6); Accelerate's own formula also pads
 * batches that already divide evenly (8 rows on 2 processes become 10),
 * which we do not copy.
 */
export function padInputTensors<D>(data: D, batchSize: number, numProcesses: number, options: PadInputTensorsOptions = {}): D {
  if (!Number.isInteger(numProcesses) || numProcesses < 1) {
    throw new RangeError(`padInputTensors: numProcesses must be a positive integer, got ${numProcesses}.`);
  }
  const dim = options.dim ?? 0;
  const target = Math.max(Math.ceil(batchSize / numProcesses), 1) * numProcesses;
  const pad = (t: unknown): unknown => {
    const o = opsFor(t, options.ops)!;
    const shape = o.shape(t);
    const d = dim < 0 ? dim + shape.length : dim;
    const missing = target - shape[d];
    if (missing <= 0) return t;
    const padShape = [...shape];
    padShape[d] = missing;
    return o.cat([t, o.fullLike(t, padShape, 0)], d);
  };
  const padInputTensor = pad;
  return recursivelyApply(padInputTensor, data, { testType: tensorTest(options.ops), errorOnOtherType: true }) as D;
}

const LOW_PRECISION: ReadonlySet<DType> = new Set(['float16', 'bfloat16']);

/**
 * Cast every float16/bfloat16 tensor of a nested structure to float32
 * (other leaves unchanged). Uses `ops.cast` when the backend has it, else a
 * host round trip.
 */
export function convertToFp32<D>(data: D, ops?: TensorOps<any>): D {
  const isLowPrecisionTensor = (x: unknown): boolean => {
    const o = opsFor(x, ops);
    return o !== undefined && LOW_PRECISION.has(o.dtype(x));
  };
  const toFp32 = (t: unknown): unknown => {
    const o = opsFor(t, ops)!;
    if (o.cast) return o.cast(t, 'float32');
    const host = hostTensorOps.cast(o.toHost(t), 'float32');
    return o.fromHost(host, o.device(t));
  };
  return recursivelyApply(toFp32, data, { testType: isLowPrecisionTensor }) as D;
}
