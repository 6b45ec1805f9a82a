/**
 * `DataLoader`: batches from a dataset, iterated with `for await`. The
 * backend-free counterpart of `torch.utils.data.DataLoader` (single
 * process, no workers); sharding across processes is layered on top by
 * `prepareDataLoader`.
 * @module
 */
import {
  datasetLength,
  fromArray,
  isIterableDataset,
  isMapDataset,
  iterateDataset,
  type AnyDataset,
  type Dataset,
  type IterableDataset,
} from './dataset.js';
import { defaultCollate, type Collated } from './collate.js';
import type { Generator } from './random.js';
import {
  BatchSampler,
  RandomSampler,
  SeedableRandomSampler,
  SequentialSampler,
  iterateBatchSampler,
  propagateEpoch,
  type BatchSamplerLike,
  type ResumePoint,
  type Sampler,
} from './sampler.js';

/** Options of {@link DataLoader} (PyTorch's names, camelCase). */
export interface DataLoaderOptions<T, B> {
  /**
   * Samples per batch (default 1). `null` turns automatic batching off:
   * either a `batchSampler` (or a batch sampler passed as `sampler`) gives
   * the batches, or samples are yielded one by one.
   */
  batchSize?: number | null;
  /** Reshuffle every pass (a {@link RandomSampler}, or a {@link SeedableRandomSampler} when `seed` is given). */
  shuffle?: boolean;
  /** Index order. A batch sampler here, with `batchSize: null`, acts as `batchSampler`. */
  sampler?: Sampler | BatchSamplerLike;
  /** Gives whole batches of indices; `number[][]` for fixed variable-size batches. Excludes batchSize/shuffle/sampler/dropLast. */
  batchSampler?: BatchSamplerLike;
  /** Drop the last incomplete batch. */
  dropLast?: boolean;
  /** Builds a batch from samples (default {@link defaultCollate}). */
  collateFn?: (samples: T[]) => B | Promise<B>;
  /** Generator for `shuffle`. */
  generator?: Generator;
  /** With `shuffle`: use a {@link SeedableRandomSampler} with this seed (order = f(seed, epoch)). */
  seed?: number;
}

/**
 * Batches from a map-style or iterable dataset. Iterate with
 * `for await (const batch of loader)`; each loop is one pass (epoch).
 */
export class DataLoader<T = unknown, B = Collated<T>> implements AsyncIterable<B> {
  /** The dataset (arrays are wrapped with {@link fromArray}). */
  readonly dataset: Dataset<T> | IterableDataset<T>;
  /** Samples per batch, or null when batches come from a batch sampler (or batching is off). */
  readonly batchSize: number | null;
  /** Drop the last short batch (for the automatic batching paths). */
  readonly dropLast: boolean;
  /** Index sampler (map-style datasets only). */
  readonly sampler: Sampler | undefined;
  /** Batch sampler (map-style datasets with batching). */
  readonly batchSampler: BatchSamplerLike | undefined;
  /** Collate function. */
  readonly collateFn: (samples: T[]) => B | Promise<B>;
  /** Generator given in the options. */
  readonly generator: Generator | undefined;
  /** Epoch counter (Accelerate's `iteration`): passed to samplers by {@link setEpoch}. */
  iteration = 0;
  /** True when the user passed a batch sampler as `sampler` (PyTorch `batch_size=None` idiom). */
  readonly samplerIsBatchSampler: boolean;

  constructor(dataset: AnyDataset<T>, options: DataLoaderOptions<T, B> = {}) {
    const ds: Dataset<T> | IterableDataset<T> = Array.isArray(dataset) ? fromArray(dataset as readonly T[]) : (dataset as Dataset<T> | IterableDataset<T>);
    if (!isMapDataset(ds) && !isIterableDataset(ds)) {
      throw new TypeError(
        'DataLoader: dataset must be an array, a map-style dataset ({ length, get(i) }) or an iterable dataset ([Symbol.asyncIterator] or [Symbol.iterator]).',
      );
    }
    this.dataset = ds;
    this.generator = options.generator;
    let batchSize = options.batchSize === undefined ? 1 : options.batchSize;
    const dropLast = options.dropLast ?? false;
    if (batchSize !== null && (!Number.isSafeInteger(batchSize) || batchSize < 1)) {
      throw new RangeError(`DataLoader: batchSize must be a positive integer or null, got ${String(batchSize)}.`);
    }
    let sampler: Sampler | undefined;
    let batchSampler: BatchSamplerLike | undefined;
    let samplerIsBatchSampler = false;

    if (isIterableDataset(ds as AnyDataset<T>)) {
      if (options.sampler !== undefined || options.batchSampler !== undefined || options.shuffle) {
        throw new TypeError(
          'DataLoader: an iterable dataset takes no sampler, batchSampler or shuffle (its stream defines the order). Shuffle inside the dataset, using setEpoch to reseed.',
        );
      }
    } else {
      const n = (ds as Dataset<T>).length;
      if (options.batchSampler !== undefined) {
        if (options.batchSize !== undefined && options.batchSize !== 1 && options.batchSize !== null) {
          throw new TypeError('DataLoader: batchSampler gives the batches, so batchSize must be left out (or 1/null).');
        }
        if (options.shuffle || options.sampler !== undefined || options.dropLast) {
          throw new TypeError('DataLoader: batchSampler is mutually exclusive with shuffle, sampler and dropLast; configure them on the batch sampler.');
        }
        batchSampler = options.batchSampler;
        batchSize = null;
        sampler = batchSampler.sampler;
      } else {
        if (options.sampler !== undefined && options.shuffle) {
          throw new TypeError('DataLoader: sampler and shuffle are mutually exclusive; pass a RandomSampler as sampler, or shuffle: true alone.');
        }
        if (options.sampler !== undefined && batchSize === null && isBatchSamplerObject(options.sampler)) {
          batchSampler = options.sampler as BatchSamplerLike;
          sampler = batchSampler.sampler;
          samplerIsBatchSampler = true;
        } else {
          sampler =
            (options.sampler as Sampler | undefined) ??
            (options.shuffle
              ? options.seed !== undefined
                ? new SeedableRandomSampler(n, { seed: options.seed })
                : new RandomSampler(n, { generator: options.generator })
              : new SequentialSampler(n));
          if (batchSize !== null) batchSampler = new BatchSampler(sampler, batchSize, dropLast);
        }
      }
    }
    if (batchSize === null && batchSampler === undefined && options.collateFn !== undefined) {
      throw new TypeError('DataLoader: collateFn is only used when batching; with batchSize null and no batch sampler samples are yielded as they are.');
    }
    this.batchSize = batchSize;
    this.dropLast = dropLast;
    this.sampler = sampler;
    this.batchSampler = batchSampler;
    this.samplerIsBatchSampler = samplerIsBatchSampler;
    this.collateFn = options.collateFn ?? ((samples: T[]) => defaultCollate(samples) as B);
  }

  /** Batches per pass. Throws when the dataset has no length (a stream). */
  get length(): number {
    const n = this.lengthOrUndefined();
    if (n === undefined) {
      throw new TypeError('DataLoader.length: this loader has no length because its dataset (or batch sampler) has none.');
    }
    return n;
  }

  /** Batches per pass, or undefined when unknown. */
  lengthOrUndefined(): number | undefined {
    if (isIterableDataset(this.dataset)) {
      const n = datasetLength(this.dataset);
      if (n === undefined) return undefined;
      if (this.batchSize === null) return n;
      return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
    }
    if (this.batchSampler) return this.batchSampler.length;
    return this.sampler?.length;
  }

  /**
   * Set the epoch: stored as `iteration`, and passed to the batch sampler,
   * the samplers it wraps (a {@link SeedableRandomSampler} reseeds with it)
   * and, when none took it, the dataset.
   */
  setEpoch(epoch: number): void {
    if (!Number.isSafeInteger(epoch) || epoch < 0) {
      throw new RangeError(`setEpoch: epoch must be a non-negative integer, got ${String(epoch)}.`);
    }
    this.iteration = epoch;
    const reached = propagateEpoch(this.batchSampler ?? this.sampler, epoch);
    if (!reached) this.dataset.setEpoch?.(epoch);
  }

  [Symbol.asyncIterator](): AsyncIterator<B> {
    return this.rawBatches();
  }

  /**
   * One pass of collated batches, starting at `start` (samples of the
   * underlying order, or batches of the batch sampler) for exact resume.
   * `onIndices` (map-style datasets with a batch sampler) sees every index of
   * the epoch's order in turn: the skipped ones, then each batch's.
   */
  async *rawBatches(start: ResumePoint = {}, onIndices?: (indices: number[]) => void): AsyncGenerator<B, void, undefined> {
    const ds = this.dataset;
    if (isIterableDataset(ds)) {
      if (start.batches) {
        if (this.batchSize === null) start = { samples: (start.samples ?? 0) + start.batches };
        else throw new RangeError('DataLoader: an iterable dataset resumes by samples, not batches.');
      }
      const stream = iterateDataset(ds, start.samples ?? 0);
      if (this.batchSize === null) {
        yield* stream as AsyncGenerator<unknown> as AsyncGenerator<B>;
        return;
      }
      let chunk: T[] = [];
      for await (const x of stream) {
        chunk.push(x);
        if (chunk.length === this.batchSize) {
          const samples = chunk;
          chunk = [];
          yield await this.collateFn(samples);
        }
      }
      if (chunk.length > 0 && !this.dropLast) yield await this.collateFn(chunk);
      return;
    }
    const map = ds as Dataset<T>;
    if (this.batchSampler) {
      for (const batch of this.mapBatches(start, onIndices)) yield await batch;
      return;
    }
    // No batching: one sample per step.
    const skip = (start.samples ?? 0) + (start.batches ?? 0);
    let k = 0;
    for (const i of this.sampler!) {
      if (k++ < skip) continue;
      yield (await map.get(i)) as unknown as B;
    }
  }
  /**
   * The batches of a map-style dataset with a batch sampler, one pass from `start` (as
   * {@link rawBatches}), pulled synchronously: each is the collate function's result, or a
   * promise of it when a sample or the collate function is asynchronous. A prepared loader
   * iterates this directly, without an async generator in between (it runs on every step).
   * @internal
   */
  *mapBatches(start: ResumePoint = {}, onIndices?: (indices: number[]) => void): IterableIterator<B | Promise<B>> {
    const map = this.dataset as Dataset<T>;
    for (const indices of iterateBatchSampler(this.batchSampler!, start, onIndices)) {
      onIndices?.(indices);
      // Most datasets answer synchronously: only wait (one Promise per sample) when one did not.
      const samples: Array<T | Promise<T>> = new Array(indices.length);
      let pending = false;
      for (let k = 0; k < indices.length; k++) {
        const s = map.get(indices[k]);
        if (!pending && isThenable(s)) pending = true;
        samples[k] = s;
      }
      yield pending ? Promise.all(samples).then((all) => this.collateFn(all)) : this.collateFn(samples as T[]);
    }
  }
}

/** True for a promise or any other thenable. @internal */
export function isThenable(x: unknown): x is PromiseLike<unknown> {
  return x !== null && (typeof x === 'object' || typeof x === 'function') && typeof (x as { then?: unknown }).then === 'function';
}

/** With `batchSize: null`, a `sampler` yields batches unless it is recognisably an index sampler. */
function isBatchSamplerObject(s: Sampler | BatchSamplerLike): boolean {
  if (s instanceof SequentialSampler || s instanceof RandomSampler) return false;
  if (Array.isArray(s)) return s.length > 0 && Array.isArray(s[0]);
  return true;
}
