/**
 * Turning samples into batches, and the batch-structure operations the
 * dispatcher needs (concatenate along the batch dimension, slice it, find
 * its size). Backend-free: batches hold {@link HostTensor}s until a device
 * transform moves them.
 *
 * Batch structure: a {@link HostTensor} (or typed array) is a leaf with a
 * batch dimension; a plain object or an array of non-primitive values is a
 * structure walked field by field; an array of primitives (strings, numbers,
 * booleans, null) is a per-sample column; any other value is metadata that is
 * passed through unchanged.
 * @module
 */
import {
  HostTensor,
  dtypeOfHostArray,
  isHostArray,
  type DType,
  type HostArray,
} from '../tensor/host-tensor.js';
import { allocHostArray } from './dataset.js';

/**
 * The key of the method by which a backend's tensor class batches its samples in
 * {@link defaultCollate} (a libtorch `Tensor` stacks them along a new first dimension,
 * as PyTorch's `default_collate` calls `torch.stack`). Core knows no backend tensor
 * type; a value whose class has this method is collated by it:
 * `first[collateBatch](samples, where)`, `where` naming the position for errors.
 */
export const collateBatch: unique symbol = Symbol.for('@accelerate/core.collateBatch');

/** A sample value that batches itself (see {@link collateBatch}). */
export interface SelfCollating<B = unknown> {
  [collateBatch](samples: readonly unknown[], where: string): B;
}

/** Type of `defaultCollate(samples: T[])` (`any` skips the {@link SelfCollating} test, which would make it `unknown`). */
export type Collated<T> = 0 extends 1 & T ? CollatedPlain<T> : T extends SelfCollating<infer B> ? B : CollatedPlain<T>;

type CollatedPlain<T> = T extends HostTensor | HostArray | number | bigint | boolean
  ? HostTensor
  : T extends string
    ? string[]
    : T extends null | undefined | Date | Map<unknown, unknown> | Set<unknown> | ((...args: never[]) => unknown)
      ? T[]
      : T extends readonly unknown[]
        ? { -readonly [K in keyof T]: Collated<T[K]> }
        : T extends object
          ? { [K in keyof T]: Collated<T[K]> }
          : T[];

type Settable = { set(src: ArrayLike<number | bigint>, offset?: number): void };

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object') return false;
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === null;
}

function isPrimitive(x: unknown): boolean {
  return x === null || (typeof x !== 'object' && typeof x !== 'function');
}

/** An array whose elements are all primitives: a per-sample column (e.g. `string[]`). */
function isColumn(x: unknown): x is unknown[] {
  return Array.isArray(x) && x.every(isPrimitive);
}

function describe(x: unknown): string {
  if (x instanceof HostTensor) return `HostTensor(${x.dtype}, [${x.shape.join(', ')}])`;
  if (isHostArray(x)) return `${x.constructor.name}(${x.length})`;
  if (Array.isArray(x)) return `array(${x.length})`;
  if (x === null) return 'null';
  return typeof x === 'object' ? (x.constructor?.name ?? 'object') : typeof x;
}

/** Concatenate typed arrays of one dtype into one. */
function joinArrays(dtype: DType, parts: readonly HostArray[]): HostArray {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = allocHostArray(dtype, total);
  let off = 0;
  for (const p of parts) {
    (out as unknown as Settable).set(p as unknown as ArrayLike<number>, off);
    off += p.length;
  }
  return out;
}

/** Stack same-shape tensors along a new leading dimension. */
export function stackTensors(tensors: readonly HostTensor[]): HostTensor {
  if (tensors.length === 0) throw new RangeError('stackTensors: nothing to stack.');
  const { shape, dtype } = tensors[0];
  const per = tensors[0].data.length;
  // Check and copy in one pass: this runs for every tensor field of every batch.
  const out = allocHostArray(dtype, tensors.length * per) as unknown as Settable;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    let same = t.dtype === dtype && t.shape.length === shape.length;
    for (let k = 0; same && k < shape.length; k++) same = t.shape[k] === shape[k];
    if (!same) {
      throw new RangeError(
        `stackTensors: every sample must have the same shape and dtype to be stacked into a batch; sample 0 is ${describe(tensors[0])} but sample ${i} is ${describe(t)}. ` +
          'Pad samples to one shape, or pass a collateFn.',
      );
    }
    out.set(t.data as unknown as ArrayLike<number>, i * per);
  }
  return new HostTensor(out as unknown as HostArray, [tensors.length, ...shape], dtype);
}

/** Concatenate tensors along dimension 0 (same dtype and trailing dimensions). */
export function concatTensors(tensors: readonly HostTensor[]): HostTensor {
  if (tensors.length === 0) throw new RangeError('concatTensors: nothing to concatenate.');
  const first = tensors[0];
  if (first.shape.length === 0) throw new RangeError('concatTensors: cannot concatenate scalar (0-d) tensors along dimension 0.');
  const tail = first.shape.slice(1);
  let rows = 0;
  tensors.forEach((t, i) => {
    if (t.dtype !== first.dtype || t.shape.length !== first.shape.length || t.shape.slice(1).some((d, k) => d !== tail[k])) {
      throw new RangeError(
        `concatTensors: tensor ${i} is ${describe(t)} but tensor 0 is ${describe(first)}; only the first dimension may differ.`,
      );
    }
    rows += t.shape[0];
  });
  return new HostTensor(
    joinArrays(
      first.dtype,
      tensors.map((t) => t.data),
    ),
    [rows, ...tail],
    first.dtype,
  );
}

/** Rows `[start, end)` of a tensor along dimension 0 (a copy). Out-of-range bounds are clamped, like Python slices. */
export function sliceRows(t: HostTensor, start: number, end: number): HostTensor {
  if (t.shape.length === 0) return t;
  const rows = t.shape[0];
  const s = Math.max(0, Math.min(rows, start));
  const e = Math.max(s, Math.min(rows, end));
  const per = t.shape.slice(1).reduce((a, b) => a * b, 1);
  const data = (t.data as Float64Array).slice(s * per, e * per) as unknown as HostArray;
  return new HostTensor(data, [e - s, ...t.shape.slice(1)], t.dtype);
}

/**
 * PyTorch's `default_collate`, structure-preserving: numbers become a tensor
 * (all integers -> int64, otherwise float64), booleans a bool tensor,
 * bigints int64; tensors and typed arrays are stacked with a leading batch
 * dimension (a backend's tensors by their {@link collateBatch} method); objects
 * and arrays are collated field by field; strings become `string[]`; anything
 * else is passed through as the list of samples.
 */
export function defaultCollate<T>(samples: readonly T[]): Collated<T> {
  return collateValues(samples as readonly unknown[], 'batch') as Collated<T>;
}

/**
 * The common column shapes, checked in one pass before the one copy: equal-length
 * typed arrays of one kind, all-number columns. Returns undefined when the values
 * do not fit (the general path then collates them, or throws its precise error).
 * HostTensors need no fast path: {@link stackTensors} checks and copies in one pass.
 */
function collateFast(values: readonly unknown[]): HostTensor | undefined {
  const n = values.length;
  const first = values[0];
  if (isHostArray(first)) {
    const Ctor = first.constructor;
    const per = first.length;
    for (let i = 0; i < n; i++) {
      const v = values[i] as HostArray;
      if (v === null || typeof v !== 'object' || v.constructor !== Ctor || v.length !== per) return undefined;
    }
    const dtype = dtypeOfHostArray(first);
    return new HostTensor(joinArrays(dtype, values as HostArray[]), [n, per], dtype);
  }
  if (typeof first === 'number') {
    let ints = true;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (typeof v !== 'number') return undefined;
      if (ints && !Number.isInteger(v)) ints = false;
    }
    return HostTensor.fromNumbers(values as number[], [n], ints ? 'int64' : 'float64');
  }
  return undefined;
}

/** The error of a sample whose kind differs from sample 0's. */
function kindError(path: string, kind: string, i: number, v: unknown): TypeError {
  return new TypeError(
    `defaultCollate: at ${path}, sample 0 is ${kind} but sample ${i} is ${describe(v)}. Give every sample the same structure, or pass a collateFn.`,
  );
}

/**
 * Rows that are plain objects (sample 0 is one), collated field by field. The fields of the
 * common rows are filled straight from the rows in one pass each: a typed-array field into one
 * buffer, a number field into its column; a field that does not fit (or any other kind) goes
 * through {@link collateValues} with the column read so far, which gives the same batch or the
 * same error as collating the whole column would.
 */
function collateRecords(values: readonly unknown[], path: string): Record<string, unknown> {
  const n = values.length;
  for (let i = 1; i < n; i++) {
    if (!isPlainObject(values[i])) throw kindError(path, 'an object', i, values[i]);
  }
  const rows = values as readonly Record<string, unknown>[];
  const keys = Object.keys(rows[0]);
  const out: Record<string, unknown> = {};
  for (let k = 0; k < keys.length; k++) out[keys[k]] = collateField(rows, keys[k], path);
  return out;
}

/** Field `key` of every row, collated (see {@link collateRecords}). */
function collateField(rows: readonly Record<string, unknown>[], key: string, path: string): unknown {
  const n = rows.length;
  const column = new Array<unknown>(n);
  const f = rows[0][key];
  column[0] = f;
  // Rows whose field is already in `column` (each row's field is read once).
  let read = 1;
  if (isHostArray(f)) {
    // Equal-length typed arrays of one kind (collateFast's condition), copied into the batch as they are read.
    const Ctor = f.constructor;
    const per = f.length;
    const dtype = dtypeOfHostArray(f);
    const data = allocHostArray(dtype, n * per);
    const out = data as unknown as Settable;
    out.set(f as unknown as ArrayLike<number>, 0);
    for (; read < n; read++) {
      const v = rows[read][key] as HostArray;
      column[read] = v;
      if (v === null || typeof v !== 'object' || v.constructor !== Ctor || v.length !== per) break;
      out.set(v as unknown as ArrayLike<number>, read * per);
    }
    if (read === n) return new HostTensor(data, [n, per], dtype);
    read++;
  } else if (typeof f === 'number') {
    let ints = Number.isInteger(f);
    for (; read < n; read++) {
      const v = rows[read][key];
      column[read] = v;
      if (typeof v !== 'number') break;
      if (ints && !Number.isInteger(v)) ints = false;
    }
    if (read === n) return HostTensor.fromNumbers(column as number[], [n], ints ? 'int64' : 'float64');
    read++;
  }
  // Any other field, or one that did not fit: the whole column, then the general path.
  for (let i = 0; i < n; i++) {
    const v = rows[i];
    const x = i < read ? column[i] : v[key];
    // `in` only when the value is undefined: a keyed read is much cheaper, and this runs per sample and field.
    if (x === undefined && !(key in v)) {
      throw new TypeError(`defaultCollate: sample ${i} has no field "${key}" (at ${path}) but sample 0 has. Give every sample the same fields.`);
    }
    column[i] = x;
  }
  return collateValues(column, `${path}.${key}`);
}

function collateValues(values: readonly unknown[], path: string): unknown {
  if (values.length === 0) throw new RangeError(`defaultCollate: no samples to collate at ${path}.`);
  if (isPlainObject(values[0])) return collateRecords(values, path);
  const fast = collateFast(values);
  if (fast) return fast;
  const first = values[0];
  const sameKind = (pred: (v: unknown) => boolean, kind: string): void => {
    values.forEach((v, i) => {
      if (!pred(v)) throw kindError(path, kind, i, v);
    });
  };
  if (first instanceof HostTensor) {
    sameKind((v) => v instanceof HostTensor, 'a HostTensor');
    return stackTensors(values as HostTensor[]);
  }
  if (isHostArray(first)) {
    const ctor = first.constructor;
    sameKind((v) => isHostArray(v) && v.constructor === ctor, `a ${ctor.name}`);
    const dtype = dtypeOfHostArray(first);
    return stackTensors((values as HostArray[]).map((a) => new HostTensor(a, [a.length], dtype)));
  }
  switch (typeof first) {
    case 'number':
      sameKind((v) => typeof v === 'number', 'a number');
      return HostTensor.fromNumbers(values as number[]);
    case 'bigint':
      sameKind((v) => typeof v === 'bigint', 'a bigint');
      return new HostTensor(BigInt64Array.from(values as bigint[]), [values.length], 'int64');
    case 'boolean':
      sameKind((v) => typeof v === 'boolean', 'a boolean');
      return new HostTensor(Uint8Array.from(values as boolean[], (b) => (b ? 1 : 0)), [values.length], 'bool');
    case 'string':
      sameKind((v) => typeof v === 'string', 'a string');
      return [...values];
    default:
      break;
  }
  if (Array.isArray(first)) {
    const n = first.length;
    sameKind((v) => Array.isArray(v) && v.length === n, `an array of length ${n}`);
    const out: unknown[] = [];
    for (let k = 0; k < n; k++) {
      out.push(
        collateValues(
          values.map((v) => (v as unknown[])[k]),
          `${path}[${k}]`,
        ),
      );
    }
    return out;
  }
  // A backend's tensor (e.g. libtorch's) batches itself.
  if (typeof (first as Partial<SelfCollating> | null)?.[collateBatch] === 'function') {
    return (first as SelfCollating)[collateBatch](values, path);
  }
  // null, undefined, other class instances...: left to the user, untouched.
  return [...values];
}

/**
 * Size of the batch dimension: the first dimension of the first tensor leaf
 * (or length of the first column) found depth-first; undefined if none.
 */
export function batchSizeOf(batch: unknown): number | undefined {
  if (batch instanceof HostTensor) return batch.shape.length > 0 ? batch.shape[0] : undefined;
  if (isHostArray(batch)) return batch.length;
  if (isColumn(batch)) return batch.length;
  if (Array.isArray(batch)) {
    for (const x of batch) {
      const n = batchSizeOf(x);
      if (n !== undefined) return n;
    }
    return undefined;
  }
  if (isPlainObject(batch)) {
    for (const k of Object.keys(batch)) {
      const n = batchSizeOf(batch[k]);
      if (n !== undefined) return n;
    }
  }
  return undefined;
}

/**
 * Rows `[start, end)` of every batch leaf (Accelerate's `slice_tensors`);
 * columns are sliced too; metadata passes through.
 */
export function sliceBatch<B>(batch: B, start: number, end: number): B {
  const go = (x: unknown): unknown => {
    if (x instanceof HostTensor) return sliceRows(x, start, end);
    if (isHostArray(x)) return (x as Float64Array).slice(start, end);
    if (isColumn(x)) return x.slice(start, end);
    if (Array.isArray(x)) return x.map(go);
    if (isPlainObject(x)) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(x)) out[k] = go(x[k]);
      return out;
    }
    return x;
  };
  return go(batch) as B;
}

/**
 * Concatenate batches of one structure along the batch dimension
 * (Accelerate's `concatenate`). Metadata leaves must be equal across batches
 * and are kept once.
 */
export function concatBatches<B>(batches: readonly B[]): B {
  if (batches.length === 0) throw new RangeError('concatBatches: nothing to concatenate.');
  const go = (xs: readonly unknown[], path: string): unknown => {
    const first = xs[0];
    if (first instanceof HostTensor) {
      xs.forEach((x, i) => {
        if (!(x instanceof HostTensor)) throw new TypeError(`concatBatches: at ${path}, batch 0 has a HostTensor but batch ${i} has ${describe(x)}.`);
      });
      return concatTensors(xs as HostTensor[]);
    }
    if (isHostArray(first)) {
      const dtype = dtypeOfHostArray(first);
      xs.forEach((x, i) => {
        if (!isHostArray(x) || x.constructor !== first.constructor) {
          throw new TypeError(`concatBatches: at ${path}, batch 0 has a ${first.constructor.name} but batch ${i} has ${describe(x)}.`);
        }
      });
      return joinArrays(dtype, xs as HostArray[]);
    }
    if (isColumn(first)) {
      xs.forEach((x, i) => {
        if (!Array.isArray(x)) throw new TypeError(`concatBatches: at ${path}, batch 0 has an array but batch ${i} has ${describe(x)}.`);
      });
      return (xs as unknown[][]).flat();
    }
    if (Array.isArray(first)) {
      const n = first.length;
      xs.forEach((x, i) => {
        if (!Array.isArray(x) || x.length !== n) {
          throw new TypeError(`concatBatches: at ${path}, batch 0 has an array of length ${n} but batch ${i} has ${describe(x)}.`);
        }
      });
      return first.map((_, k) =>
        go(
          xs.map((x) => (x as unknown[])[k]),
          `${path}[${k}]`,
        ),
      );
    }
    if (isPlainObject(first)) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(first)) {
        out[k] = go(
          xs.map((x, i) => {
            if (!isPlainObject(x) || !(k in x)) throw new TypeError(`concatBatches: batch ${i} has no field "${k}" at ${path}.`);
            return x[k];
          }),
          `${path}.${k}`,
        );
      }
      return out;
    }
    xs.forEach((x, i) => {
      if (!Object.is(x, first)) {
        throw new TypeError(
          `concatBatches: at ${path}, batch 0 holds ${JSON.stringify(first) ?? String(first)} and batch ${i} holds ${JSON.stringify(x) ?? String(x)}; ` +
            'non-tensor values can only be concatenated when they are equal. Collate them into a per-sample array instead.',
        );
      }
    });
    return first;
  };
  return go(batches as readonly unknown[], 'batch') as B;
}
