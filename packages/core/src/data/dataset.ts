/**
 * Dataset shapes the data pipeline understands: map-style (indexable, with a
 * length) and iterable (a stream), both possibly asynchronous.
 * @module
 */
import { HostTensor, dtypeElementBytes, hostArrayConstructor, type HostArray } from '../tensor/host-tensor.js';

/**
 * A map-style dataset (PyTorch `Dataset`): `length` samples addressed by
 * index. `get` may return a promise (samples read from disk or network).
 */
export interface Dataset<T> {
  /** Number of samples. */
  readonly length: number;
  /** Sample `index` (0 <= index < length). */
  get(index: number): T | Promise<T>;
  /** Optional hook called with the epoch at the start of each pass (HF datasets' `set_epoch`). */
  setEpoch?(epoch: number): void;
}

/**
 * An iterable dataset (PyTorch `IterableDataset`): a stream of samples,
 * synchronous or asynchronous, with an optional known length.
 */
export interface IterableDataset<T> {
  [Symbol.asyncIterator]?(): AsyncIterator<T>;
  [Symbol.iterator]?(): Iterator<T>;
  /** Number of samples, when known (enables `length` and `remainder` on loaders). */
  readonly length?: number;
  /** Called with the epoch at the start of each pass; use it to reshuffle a stream. */
  setEpoch?(epoch: number): void;
  /**
   * Optional fast path for exact resume: the stream with its first `skip`
   * samples left out. Without it, loaders read and discard them.
   */
  iterateFrom?(skip: number): AsyncIterable<T> | Iterable<T>;
}

/** Anything a DataLoader accepts as a dataset. Plain arrays are map-style. */
export type AnyDataset<T> = Dataset<T> | IterableDataset<T> | readonly T[];

/** True for a map-style dataset (or a plain array). */
export function isMapDataset<T>(ds: AnyDataset<T>): ds is Dataset<T> | readonly T[] {
  return Array.isArray(ds) || typeof (ds as Dataset<T>).get === 'function';
}

/** True for an iterable (stream) dataset. */
export function isIterableDataset<T>(ds: AnyDataset<T>): ds is IterableDataset<T> {
  if (isMapDataset(ds)) return false;
  const d = ds as IterableDataset<T>;
  return typeof d[Symbol.asyncIterator] === 'function' || typeof d[Symbol.iterator] === 'function';
}

/** The dataset's length, or undefined when it has none. */
export function datasetLength<T>(ds: AnyDataset<T>): number | undefined {
  const n = (ds as { length?: unknown }).length;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

/** Iterate a sync or async iterable as an async iterable. */
export async function* toAsync<T>(src: AsyncIterable<T> | Iterable<T>): AsyncGenerator<T, void, undefined> {
  if (typeof (src as AsyncIterable<T>)[Symbol.asyncIterator] === 'function') {
    yield* src as AsyncIterable<T>;
  } else {
    yield* src as Iterable<T>;
  }
}

/** The samples of an iterable dataset, skipping the first `skip` (using `iterateFrom` when the dataset has it). */
export function iterateDataset<T>(ds: IterableDataset<T>, skip = 0): AsyncGenerator<T, void, undefined> {
  if (skip > 0 && typeof ds.iterateFrom === 'function') return toAsync(ds.iterateFrom(skip));
  if (typeof ds[Symbol.asyncIterator] !== 'function' && typeof ds[Symbol.iterator] !== 'function') {
    throw new TypeError('iterateDataset: the dataset has neither [Symbol.asyncIterator] nor [Symbol.iterator].');
  }
  const all = toAsync(ds as AsyncIterable<T> | Iterable<T>);
  if (skip <= 0) return all;
  return (async function* () {
    let i = 0;
    for await (const x of all) {
      if (i++ >= skip) yield x;
    }
  })();
}

/** A map-style dataset over an array (or any array-like), without copying it. */
export class ArrayDataset<T> implements Dataset<T> {
  constructor(readonly items: ArrayLike<T>) {}

  get length(): number {
    return this.items.length;
  }

  get(index: number): T {
    if (!Number.isInteger(index) || index < 0 || index >= this.items.length) {
      throw new RangeError(`ArrayDataset.get: index ${index} is out of range for a dataset of length ${this.items.length}.`);
    }
    return this.items[index];
  }
}

/** Wrap an array (or array-like, e.g. a typed array) as a map-style dataset. */
export function fromArray<T>(items: ArrayLike<T>): ArrayDataset<T> {
  return new ArrayDataset(items);
}

/** Wrap a sync or async iterable (or a function that makes one per pass) as an iterable dataset. */
export function fromIterable<T>(
  source: (() => AsyncIterable<T> | Iterable<T>) | AsyncIterable<T> | Iterable<T>,
  options: { length?: number } = {},
): IterableDataset<T> {
  const make = typeof source === 'function' ? source : () => source;
  return {
    length: options.length,
    [Symbol.asyncIterator]: () => toAsync(make())[Symbol.asyncIterator](),
  };
}

/** Row `i` of a tensor along its first dimension (shares no memory with it). */
export function tensorRow(t: HostTensor, i: number): HostTensor {
  const rows = t.shape[0];
  if (t.shape.length === 0) throw new RangeError('tensorRow: a scalar tensor has no rows.');
  if (!Number.isInteger(i) || i < 0 || i >= rows) {
    throw new RangeError(`tensorRow: row ${i} is out of range for a tensor with ${rows} rows.`);
  }
  const inner = t.shape.slice(1);
  const per = inner.reduce((a, b) => a * b, 1);
  const data = (t.data as Float64Array).slice(i * per, (i + 1) * per) as unknown as HostArray;
  return new HostTensor(data, inner, t.dtype);
}

/**
 * PyTorch's `TensorDataset`: sample `i` is the tuple of row `i` of each
 * tensor. All tensors must have the same first dimension.
 */
export class TensorDataset implements Dataset<HostTensor[]> {
  readonly tensors: readonly HostTensor[];

  constructor(...tensors: HostTensor[]) {
    if (tensors.length === 0) throw new TypeError('TensorDataset: pass at least one tensor.');
    const n = tensors[0].shape[0];
    tensors.forEach((t, k) => {
      if (t.shape.length === 0 || t.shape[0] !== n) {
        throw new RangeError(
          `TensorDataset: every tensor needs the same first dimension; tensor 0 has ${n} rows but tensor ${k} has shape [${t.shape.join(', ')}].`,
        );
      }
    });
    this.tensors = tensors;
  }

  get length(): number {
    return this.tensors[0].shape[0];
  }

  get(index: number): HostTensor[] {
    return this.tensors.map((t) => tensorRow(t, index));
  }
}

/** Bytes a tensor's data occupies (helper for serialisation and checks). */
export function tensorByteLength(t: HostTensor): number {
  return t.numel * dtypeElementBytes(t.dtype);
}

/** An empty typed array of `dtype` with `n` elements. */
export function allocHostArray(dtype: HostTensor['dtype'], n: number): HostArray {
  const Ctor = hostArrayConstructor(dtype) as unknown as new (n: number) => HostArray;
  return new Ctor(n);
}
