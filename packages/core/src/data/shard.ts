/**
 * Accelerate's sharding of one data order across processes:
 * {@link BatchSamplerShard} for map-style datasets (shards the batches of a
 * batch sampler) and {@link IterableDatasetShard} for streams (shards the
 * samples). Every process builds its own shard from the same global order,
 * so no communication is needed.
 * @module
 */
import { datasetLength, iterateDataset, type IterableDataset } from './dataset.js';
import { iterateBatchSampler, type BatchSamplerLike, type ResumableBatchSampler, type ResumePoint, type Sampler } from './sampler.js';

/** Which process a shard is for, and how batches are cut. */
export interface ShardOptions {
  /** Number of processes (P). Default 1. */
  numProcesses?: number;
  /** This process's index (0 <= p < P). Default 0. */
  processIndex?: number;
  /**
   * Cut each batch into P slices (rank p takes slice p), instead of giving
   * each rank whole batches in turn. The batch size must be a round multiple
   * of P.
   */
  splitBatches?: boolean;
}

/** Options of {@link BatchSamplerShard}. */
export interface BatchSamplerShardOptions extends ShardOptions {
  /**
   * When the batches do not divide evenly among processes, complete the last
   * round with indices from the start so every rank gets the same number of
   * full batches (default true). Off: ranks may get fewer or shorter batches.
   */
  evenBatches?: boolean;
}

function checkRank(where: string, numProcesses: number, processIndex: number): void {
  if (!Number.isSafeInteger(numProcesses) || numProcesses < 1) {
    throw new RangeError(`${where}: numProcesses must be a positive integer, got ${String(numProcesses)}.`);
  }
  if (!Number.isSafeInteger(processIndex) || processIndex < 0 || processIndex >= numProcesses) {
    throw new RangeError(`${where}: processIndex must be in [0, ${numProcesses - 1}] for numProcesses ${numProcesses}, got ${String(processIndex)}.`);
  }
}

/**
 * Accelerate's `BatchSamplerShard`: the batches of `batchSampler` that
 * belong to one process.
 *
 * - Without `splitBatches`, global batch k goes to rank k mod P, and a round
 *   of P batches is only released once its last batch is full, so ranks
 *   advance together.
 * - With `splitBatches`, every full batch is cut into P slices.
 * - At the end (unless the batch sampler drops its last batch): with
 *   `evenBatches` the last round is completed with indices cycled from the
 *   first batches; without it, ranks get what is left.
 * - Variable-size batches (no `batchSize`, e.g. a `number[][]`) are kept
 *   whole; `evenBatches` pads with whole early batches.
 */
export class BatchSamplerShard implements ResumableBatchSampler {
  /** The unsharded batch sampler. */
  readonly batchSampler: BatchSamplerLike;
  /** Number of processes (P). */
  readonly numProcesses: number;
  /** This shard's process index (p). */
  readonly processIndex: number;
  /** Cut each batch into P slices. */
  readonly splitBatches: boolean;
  /** Complete the last round from the start; mutable so `joinUnevenInputs` can switch it off temporarily. */
  evenBatches: boolean;
  /** Fixed batch size of the wrapped sampler, or undefined for variable-size batches. */
  readonly batchSize: number | undefined;
  /** The wrapped sampler's `dropLast` (false when it has none). */
  readonly dropLast: boolean;

  constructor(batchSampler: BatchSamplerLike, options: BatchSamplerShardOptions = {}) {
    this.batchSampler = batchSampler;
    this.numProcesses = options.numProcesses ?? 1;
    this.processIndex = options.processIndex ?? 0;
    this.splitBatches = options.splitBatches ?? false;
    this.evenBatches = options.evenBatches ?? true;
    checkRank('BatchSamplerShard', this.numProcesses, this.processIndex);
    const bs = batchSampler.batchSize;
    this.batchSize = typeof bs === 'number' ? bs : undefined;
    this.dropLast = batchSampler.dropLast ?? false;
    if (this.splitBatches) {
      if (this.batchSize === undefined) {
        throw new RangeError(
          'BatchSamplerShard: splitBatches (split_batches) needs a batch sampler with a fixed batchSize to cut into slices, but this one has variable-size batches. ' +
            'Pass splitBatches: false, or a batch sampler with a batchSize that is a round multiple of numProcesses.',
        );
      }
      if (this.batchSize % this.numProcesses !== 0) {
        throw new RangeError(
          `BatchSamplerShard: with splitBatches the batch size (${this.batchSize}) needs to be a round multiple of the number of processes (${this.numProcesses}). ` +
            `Use a batch size divisible by ${this.numProcesses}, or splitBatches: false.`,
        );
      }
    }
  }

  /** The index sampler under the wrapped batch sampler. */
  get sampler(): Sampler | undefined {
    return this.batchSampler.sampler;
  }

  /** Length of the wrapped batch sampler (Accelerate's `total_length`). */
  get totalLength(): number | undefined {
    return this.batchSampler.length;
  }

  /** Batches this rank gets per pass (undefined if the wrapped sampler has no length). */
  get length(): number | undefined {
    const n = this.batchSampler.length;
    if (n === undefined) return undefined;
    const P = this.numProcesses;
    if (this.splitBatches) return n;
    const base = Math.floor(n / P);
    if (n % P === 0 || this.dropLast) return base;
    if (this.evenBatches) return base + 1;
    return this.processIndex < n % P ? base + 1 : base;
  }

  [Symbol.iterator](): Iterator<number[]> {
    return this.iterateFrom({})[Symbol.iterator]();
  }

  /** This rank's batches of the pass that starts at `start` in the unsharded order. */
  iterateFrom(start: ResumePoint): Iterable<number[]> {
    // The indices a resumed pass leaves out are still the start of the epoch's
    // order: the last round is padded from them, as in an uninterrupted pass.
    const skipped: number[][] = [];
    const inner = iterateBatchSampler(this.batchSampler, start, (b) => skipped.push(b));
    return this.splitBatches ? this.iterSplit(inner, skipped) : this.iterNoSplit(inner, skipped);
  }

  setEpoch(epoch: number): void {
    this.batchSampler.setEpoch?.(epoch);
  }

  private *iterSplit(inner: Iterable<number[]>, skipped: number[][]): Generator<number[], void, undefined> {
    const bs = this.batchSize!;
    const per = bs / this.numProcesses;
    const from = per * this.processIndex;
    // The epoch's first batch (its first bs indices), also when this pass resumes after it.
    let first: number[] | undefined;
    let last: number[] | undefined;
    for (const batch of inner) {
      if (first === undefined) first = skipped.flat().slice(0, bs);
      if (first.length < bs) first = first.concat(batch).slice(0, bs);
      last = batch;
      if (batch.length === bs) yield batch.slice(from, from + per);
    }
    if (this.dropLast || first === undefined || first.length === 0 || last === undefined || last.length >= bs) return;
    if (!this.evenBatches) {
      if (last.length > from) yield last.slice(from, from + per);
      return;
    }
    // Complete the short last batch by cycling indices from the first one.
    let pool = [...first];
    while (pool.length < bs) pool = pool.concat(pool);
    yield last.concat(pool).slice(from, from + per);
  }

  private *iterNoSplit(inner: Iterable<number[]>, skipped: number[][]): Generator<number[], void, undefined> {
    const P = this.numProcesses;
    const p = this.processIndex;
    const bs = this.batchSize;
    const variable = bs === undefined;
    const full = (b: readonly number[]): boolean => variable || b.length === bs;
    // First P batches (flattened indices, or whole batches when sizes vary), to cycle from at the end.
    let flatStart: number[] = [];
    let batchStart: number[][] = [];
    let mine: number[] | null = null;
    let idx = -1;
    let batch: number[] = [];
    for (const b of inner) {
      idx++;
      batch = b;
      if (!this.dropLast) {
        // Skipped indices (a resumed pass) are reported before the first batch.
        if (idx === 0) {
          if (variable) batchStart = skipped.slice(0, P);
          else flatStart = skipped.flat().slice(0, P * bs);
        }
        if (variable) {
          if (batchStart.length < P) batchStart.push(b);
        } else if (flatStart.length < P * bs) {
          flatStart = flatStart.concat(b).slice(0, P * bs);
        }
      }
      if (idx % P === p) mine = b;
      // A round is released only when its last batch is full.
      if (idx % P === P - 1 && full(b)) {
        yield mine!;
        mine = null;
      }
    }
    const seenAny = idx >= 0 && (variable ? batchStart.length > 0 : flatStart.length > 0);
    if (this.dropLast || !seenAny) return;
    if (!this.evenBatches) {
      if (mine !== null && mine.length > 0) yield mine;
      return;
    }
    if (mine !== null && mine.length > 0 && full(mine)) yield mine;
    if (variable) {
      while (batchStart.length < P) batchStart = batchStart.concat(batchStart);
    } else {
      while (flatStart.length < P * bs) flatStart = flatStart.concat(flatStart);
    }
    // The last batch, if full, was already given to its rank: continue after it.
    let pending: number[] = batch;
    if (full(batch)) {
      pending = [];
      idx++;
    }
    let cycle = 0;
    while (idx % P !== 0 || pending.length > 0) {
      let out: number[];
      if (variable) {
        out = batchStart[cycle];
        cycle++;
      } else {
        const end = cycle + bs - pending.length;
        out = pending.concat(flatStart.slice(cycle, end));
        cycle = end;
      }
      if (idx % P === p) yield out;
      pending = [];
      idx++;
    }
  }
}

/** Options of {@link IterableDatasetShard}. */
export interface IterableDatasetShardOptions extends ShardOptions {
  /** Per-process batch size, or the whole batch size with `splitBatches`. Default 1. */
  batchSize?: number;
  /** Drop the last incomplete global batch instead of completing it from the start. */
  dropLast?: boolean;
}

/**
 * Accelerate's `IterableDatasetShard`: reads the stream in global batches of
 * `batchSize * P` samples (`batchSize` with `splitBatches`) and yields this
 * rank's slice of each. A short last global batch is completed by cycling
 * the first global batch (or itself) unless `dropLast`.
 */
export class IterableDatasetShard<T> implements IterableDataset<T> {
  /** The source stream. */
  readonly dataset: IterableDataset<T>;
  /** Per-process batch size, or the whole batch size with `splitBatches`. */
  readonly batchSize: number;
  /** Drop the last incomplete global batch. */
  readonly dropLast: boolean;
  /** Number of processes (P). */
  readonly numProcesses: number;
  /** This shard's process index (p). */
  readonly processIndex: number;
  /** Cut each global batch of `batchSize` into P slices. */
  readonly splitBatches: boolean;
  /** Last epoch passed to {@link setEpoch}. */
  epoch = 0;

  constructor(dataset: IterableDataset<T>, options: IterableDatasetShardOptions = {}) {
    this.dataset = dataset;
    this.batchSize = options.batchSize ?? 1;
    this.dropLast = options.dropLast ?? false;
    this.numProcesses = options.numProcesses ?? 1;
    this.processIndex = options.processIndex ?? 0;
    this.splitBatches = options.splitBatches ?? false;
    checkRank('IterableDatasetShard', this.numProcesses, this.processIndex);
    if (!Number.isSafeInteger(this.batchSize) || this.batchSize < 1) {
      throw new RangeError(`IterableDatasetShard: batchSize must be a positive integer, got ${String(this.batchSize)}.`);
    }
    // Accelerate exempts batch size 1, which then yields nothing at all on P > 1; we refuse it instead.
    if (this.splitBatches && this.batchSize % this.numProcesses !== 0) {
      throw new RangeError(
        `IterableDatasetShard: with splitBatches the batch size (${this.batchSize}) needs to be a round multiple of the number of processes (${this.numProcesses}). ` +
          `Use a batch size divisible by ${this.numProcesses}, or splitBatches: false.`,
      );
    }
  }

  /** Samples read from the source per global batch. */
  get globalBatchSize(): number {
    return this.splitBatches ? this.batchSize : this.batchSize * this.numProcesses;
  }

  /** Samples this rank gets per global batch. */
  get processBatchSize(): number {
    return this.splitBatches ? this.batchSize / this.numProcesses : this.batchSize;
  }

  /** Length of the source stream, if known (Accelerate's `total_length` for remainder computations). */
  get totalLength(): number | undefined {
    return datasetLength(this.dataset);
  }

  /**
   * Samples this rank yields per pass, if the source has a length. (Accelerate
   * computes this with `batchSize * P` even under `splitBatches`; we use the
   * real global batch size.)
   */
  get length(): number | undefined {
    const n = this.totalLength;
    if (n === undefined) return undefined;
    const rounds = this.dropLast ? Math.floor(n / this.globalBatchSize) : Math.ceil(n / this.globalBatchSize);
    return rounds * this.processBatchSize;
  }

  setEpoch(epoch: number): void {
    this.epoch = epoch;
    this.dataset.setEpoch?.(epoch);
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.iterateFrom(0);
  }

  /** This rank's samples when the source starts after its first `skip` samples (exact resume). */
  async *iterateFrom(skip: number): AsyncGenerator<T, void, undefined> {
    const real = this.globalBatchSize;
    const per = this.processBatchSize;
    const from = this.processIndex * per;
    let first: T[] | undefined;
    let current: T[] = [];
    // A resumed pass still pads from the epoch's first global batch, like an uninterrupted one.
    let head: T[] | undefined;
    let source: AsyncIterable<T>;
    if (skip > 0 && typeof this.dataset.iterateFrom !== 'function') {
      head = [];
      const h = head;
      const all = iterateDataset(this.dataset, 0);
      source = (async function* () {
        let i = 0;
        for await (const x of all) {
          if (h.length < real) h.push(x);
          if (i++ >= skip) yield x;
        }
      })();
    } else {
      source = iterateDataset(this.dataset, skip);
    }
    for await (const x of source) {
      current.push(x);
      if (current.length === real) {
        for (let i = from; i < from + per; i++) yield current[i];
        if (first === undefined) first = current;
        current = [];
      }
    }
    if (this.dropLast || current.length === 0) return;
    if (skip > 0 && head === undefined) {
      // The source skipped natively: read the epoch's first global batch again (the stream must be re-iterable for the epoch).
      head = [];
      for await (const x of iterateDataset(this.dataset, 0)) {
        head.push(x);
        if (head.length === real) break;
      }
    }
    const pool = head !== undefined && head.length > 0 ? head : (first ?? [...current]);
    while (current.length < real) current = current.concat(pool);
    for (let i = from; i < from + per; i++) yield current[i];
  }
}
