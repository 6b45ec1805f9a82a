/**
 * Index samplers (which samples, in which order) and batch samplers (how
 * indices are grouped into batches), as in `torch.utils.data` plus
 * Accelerate's `SeedableRandomSampler` and `SkipBatchSampler`.
 *
 * Samplers are synchronous iterables of indices; a plain `number[]` is a
 * valid sampler and a plain `number[][]` a valid batch sampler (variable
 * batch sizes).
 * @module
 */
import { Generator, defaultGenerator, deriveSeed, type GeneratorState } from './random.js';

/** An ordered source of sample indices. `number[]` qualifies. */
export interface Sampler extends Iterable<number> {
  /** Number of indices one pass yields. */
  readonly length: number;
  setEpoch?(epoch: number): void;
}

/**
 * A source of batches of indices. `number[][]` qualifies (variable-size
 * batches). `batchSize` is the fixed batch size, or null/undefined when
 * batches vary; `dropLast` says whether a short final batch is dropped.
 */
export interface BatchSamplerLike extends Iterable<number[]> {
  readonly length?: number;
  readonly batchSize?: number | null;
  readonly dropLast?: boolean;
  /** The index sampler underneath, if any (reached by `setEpoch`). */
  readonly sampler?: Sampler;
  setEpoch?(epoch: number): void;
}

/**
 * Where a resumed pass starts: after `samples` indices of the underlying
 * order, or after `batches` batches of the unsharded batch sampler. Both are
 * independent of the number of processes.
 */
export interface ResumePoint {
  samples?: number;
  batches?: number;
}

/**
 * Receives the indices a resumed pass leaves out, in order (in chunks), so a
 * sharder can still see the start of the epoch's order (e.g. to pad the last
 * round from it, as an uninterrupted pass would).
 */
export type SkippedIndices = (indices: number[]) => void;

/** Batch samplers that can start a pass part-way (exact resume). */
export interface ResumableBatchSampler extends BatchSamplerLike {
  iterateFrom(start: ResumePoint, onSkipped?: SkippedIndices): Iterable<number[]>;
}

function checkCount(where: string, name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${where}: ${name} must be a non-negative integer, got ${String(n)}.`);
  }
}

/** Indices `0..n-1` in order. */
export class SequentialSampler implements Sampler {
  constructor(readonly length: number) {
    checkCount('SequentialSampler', 'length', length);
  }

  *[Symbol.iterator](): Iterator<number> {
    for (let i = 0; i < this.length; i++) yield i;
  }
}

/** Options of {@link RandomSampler}. */
export interface RandomSamplerOptions {
  /** Generator to draw permutations from; without one each pass draws a fresh seed from the default generator (PyTorch's behaviour). */
  generator?: Generator;
  /** Sample with replacement (then `numSamples` indices are drawn independently). */
  replacement?: boolean;
  /** Indices per pass (default: the dataset length). */
  numSamples?: number;
}

/** The sampler's checkpointable state. */
export interface RandomSamplerState {
  /** State of the generator at the start of the current (or last) pass. */
  generator: GeneratorState | null;
}

/**
 * Random order over `0..n-1` (PyTorch `RandomSampler`). Each pass continues
 * the generator's stream, so consecutive passes differ.
 */
export class RandomSampler implements Sampler {
  /** Own generator; `prepareDataLoader` gives one to unseeded samplers so processes can share it. */
  generator: Generator | undefined;
  /** Draw with replacement. */
  readonly replacement: boolean;
  private readonly numSamplesOption: number | undefined;
  private passStart: GeneratorState | null = null;
  private pendingStart: GeneratorState | null = null;

  constructor(
    readonly dataLength: number,
    options: RandomSamplerOptions = {},
  ) {
    checkCount('RandomSampler', 'dataset length', dataLength);
    if (options.numSamples !== undefined) {
      checkCount('RandomSampler', 'numSamples', options.numSamples);
      if (options.numSamples === 0) throw new RangeError('RandomSampler: numSamples must be positive, got 0.');
    }
    this.generator = options.generator;
    this.replacement = options.replacement ?? false;
    this.numSamplesOption = options.numSamples;
  }

  /** Indices per pass. */
  get length(): number {
    return this.numSamplesOption ?? this.dataLength;
  }

  /** The generator this pass uses: restored state, own generator, or a fresh one seeded from the default generator. */
  protected passGenerator(): Generator {
    let gen: Generator;
    if (this.pendingStart) {
      gen = this.generator ?? new Generator();
      gen.setState(this.pendingStart);
      this.pendingStart = null;
    } else if (this.generator) {
      gen = this.generator;
    } else {
      gen = new Generator(defaultGenerator().drawSeed());
    }
    this.passStart = gen.getState();
    return gen;
  }

  *[Symbol.iterator](): Iterator<number> {
    yield* this.draw(this.passGenerator());
  }

  protected *draw(gen: Generator): IterableIterator<number> {
    const n = this.dataLength;
    const total = this.length;
    if (this.replacement) {
      for (let i = 0; i < total; i++) yield gen.randint(n);
      return;
    }
    if (n === 0) return;
    // Like PyTorch: whole permutations, then a partial one.
    let left = total;
    while (left > 0) {
      const perm = gen.randperm(n);
      const take = Math.min(left, n);
      for (let i = 0; i < take; i++) yield perm[i];
      left -= take;
    }
  }

  /** Generator state at the start of the current or last pass (replays that pass when loaded). */
  stateDict(): RandomSamplerState {
    return { generator: this.passStart };
  }

  /** Make the next pass replay the pass whose start state is given. */
  loadStateDict(state: RandomSamplerState): void {
    this.pendingStart = state.generator;
  }
}

/** Options of {@link SeedableRandomSampler}. */
export interface SeedableRandomSamplerOptions {
  /** Base seed (Accelerate's `data_seed`); default: the default generator's initial seed. */
  seed?: number;
  /** Starting epoch (default 0). */
  epoch?: number;
  replacement?: boolean;
  numSamples?: number;
}

/**
 * Accelerate's `SeedableRandomSampler`: the order of epoch `e` is a pure
 * function of `(seed, e)`, so every process (and a resumed run) computes the
 * same permutation without exchanging RNG state. The epoch advances by one
 * after each complete pass, and {@link setEpoch} sets it explicitly.
 */
export class SeedableRandomSampler extends RandomSampler {
  /** Base seed. */
  seed: number;
  /** Epoch of the next pass. */
  epoch: number;

  constructor(dataLength: number, options: SeedableRandomSamplerOptions = {}) {
    super(dataLength, { replacement: options.replacement, numSamples: options.numSamples });
    this.seed = options.seed ?? defaultGenerator().initialSeed;
    this.epoch = options.epoch ?? 0;
    if (!Number.isSafeInteger(this.seed)) throw new TypeError(`SeedableRandomSampler: seed must be a safe integer, got ${String(this.seed)}.`);
    checkCount('SeedableRandomSampler', 'epoch', this.epoch);
  }

  /** Accelerate's `initial_seed`. */
  get initialSeed(): number {
    return this.seed;
  }

  override *[Symbol.iterator](): Iterator<number> {
    yield* this.draw(new Generator(deriveSeed(this.seed, this.epoch)));
    this.setEpoch(this.epoch + 1);
  }

  /** Set the epoch of the next pass. */
  setEpoch(epoch: number): void {
    checkCount('SeedableRandomSampler.setEpoch', 'epoch', epoch);
    this.epoch = epoch;
  }

  /** The permutation of `epoch` (without iterating). */
  orderFor(epoch: number): number[] {
    const gen = new Generator(deriveSeed(this.seed, epoch));
    return [...this.draw(gen)];
  }

  override stateDict(): RandomSamplerState {
    return { generator: null };
  }

  override loadStateDict(): void {
    // Nothing to restore: the order is a function of (seed, epoch).
  }
}

/**
 * Groups a sampler's indices into batches of `batchSize` (PyTorch
 * `BatchSampler`); the last batch is shorter unless `dropLast`.
 */
export class BatchSampler implements ResumableBatchSampler {
  readonly sampler: Sampler;

  constructor(
    sampler: Sampler | number,
    readonly batchSize: number,
    readonly dropLast = false,
  ) {
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`BatchSampler: batchSize must be a positive integer, got ${String(batchSize)}.`);
    }
    this.sampler = typeof sampler === 'number' ? new SequentialSampler(sampler) : sampler;
  }

  /** Number of batches per pass. */
  get length(): number {
    const n = this.sampler.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  [Symbol.iterator](): Iterator<number[]> {
    return this.iterateFrom({})[Symbol.iterator]();
  }

  /** Batches of the order with its first `start.samples` indices (or `start.batches` batches) left out. */
  *iterateFrom(start: ResumePoint, onSkipped?: SkippedIndices): Iterable<number[]> {
    const skip = (start.samples ?? 0) + (start.batches ?? 0) * this.batchSize;
    if (Object.getPrototypeOf(this.sampler) === SequentialSampler.prototype && (skip === 0 || !onSkipped)) {
      // In order 0..n-1: build each batch by counting instead of pulling one index at a time through
      // the sampler's generator (that runs on every training step; same batches as below).
      const n = this.sampler.length;
      for (let first = skip; first < n; first += this.batchSize) {
        const size = Math.min(this.batchSize, n - first);
        if (size < this.batchSize && this.dropLast) return;
        const batch: number[] = [];
        for (let k = 0; k < size; k++) batch.push(first + k);
        yield batch;
      }
      return;
    }
    let seen = 0;
    let batch: number[] = [];
    let skipped: number[] = [];
    for (const i of this.sampler) {
      if (seen++ < skip) {
        if (onSkipped) {
          skipped.push(i);
          if (skipped.length === this.batchSize) {
            onSkipped(skipped);
            skipped = [];
          }
        }
        continue;
      }
      if (skipped.length > 0) {
        onSkipped!(skipped);
        skipped = [];
      }
      batch.push(i);
      if (batch.length === this.batchSize) {
        yield batch;
        batch = [];
      }
    }
    if (skipped.length > 0) onSkipped!(skipped);
    if (batch.length > 0 && !this.dropLast) yield batch;
  }

  /** Forward the epoch to the index sampler. */
  setEpoch(epoch: number): void {
    this.sampler.setEpoch?.(epoch);
  }
}

/**
 * Iterate any batch sampler from a resume point, skipping batches generically
 * when it cannot start part-way itself. `onSkipped` sees the left-out
 * indices in order.
 */
export function iterateBatchSampler(bs: BatchSamplerLike, start: ResumePoint = {}, onSkipped?: SkippedIndices): Iterable<number[]> {
  const samples = start.samples ?? 0;
  const batches = start.batches ?? 0;
  if (samples === 0 && batches === 0) return bs;
  if (typeof (bs as ResumableBatchSampler).iterateFrom === 'function') {
    return (bs as ResumableBatchSampler).iterateFrom(start, onSkipped);
  }
  let skipBatches = batches;
  if (samples > 0) {
    const size = bs.batchSize;
    if (typeof size !== 'number' || samples % size !== 0) {
      throw new RangeError(
        `Cannot resume this batch sampler after ${samples} samples: it cannot skip individual samples and its batch size is ` +
          `${typeof size === 'number' ? `${size}, which does not divide ${samples}` : 'not fixed'}. ` +
          'Resume from a state saved with the same batch sampler (it records batchesConsumed), or give the sampler an iterateFrom() method.',
      );
    }
    skipBatches += samples / size;
  }
  return (function* () {
    let k = 0;
    for (const b of bs) {
      if (k++ >= skipBatches) yield b;
      else onSkipped?.(b);
    }
  })();
}

/**
 * Accelerate's `SkipBatchSampler`: the batches of `batchSampler` without its
 * first `skipBatches`.
 */
export class SkipBatchSampler implements ResumableBatchSampler {
  constructor(
    readonly batchSampler: BatchSamplerLike,
    readonly skipBatches = 0,
  ) {
    checkCount('SkipBatchSampler', 'skipBatches', skipBatches);
  }

  /** The wrapped sampler's batch size. */
  get batchSize(): number | null | undefined {
    return this.batchSampler.batchSize;
  }
  /** The wrapped sampler's `dropLast`. */
  get dropLast(): boolean | undefined {
    return this.batchSampler.dropLast;
  }
  /** The index sampler under the wrapped batch sampler. */
  get sampler(): Sampler | undefined {
    return this.batchSampler.sampler;
  }

  /** Length of the wrapped sampler (Accelerate's `total_length`). */
  get totalLength(): number | undefined {
    return this.batchSampler.length;
  }

  /** Batches left after skipping. */
  get length(): number | undefined {
    const n = this.batchSampler.length;
    return n === undefined ? undefined : Math.max(0, n - this.skipBatches);
  }

  [Symbol.iterator](): Iterator<number[]> {
    return this.iterateFrom({})[Symbol.iterator]();
  }

  /** The batches after `start` in the wrapped sampler, then without the first `skipBatches`. */
  *iterateFrom(start: ResumePoint, onSkipped?: SkippedIndices): Iterable<number[]> {
    let k = 0;
    for (const b of iterateBatchSampler(this.batchSampler, start, onSkipped)) if (k++ >= this.skipBatches) yield b;
  }

  setEpoch(epoch: number): void {
    this.batchSampler.setEpoch?.(epoch);
  }
}

/**
 * Call `setEpoch(epoch)` on `root` and on every batch sampler / sampler
 * reachable through `batchSampler` and `sampler` links (each object once), so
 * a custom batch sampler, a sharded one and the shuffling sampler underneath
 * all see the epoch. Returns true if any object took it.
 */
export function propagateEpoch(root: unknown, epoch: number): boolean {
  const seen = new Set<unknown>();
  let reached = false;
  const visit = (o: unknown): void => {
    if (o === null || typeof o !== 'object' || seen.has(o)) return;
    seen.add(o);
    const x = o as { setEpoch?: unknown; batchSampler?: unknown; sampler?: unknown };
    if (typeof x.setEpoch === 'function') {
      (x.setEpoch as (e: number) => void).call(o, epoch);
      reached = true;
    }
    visit(x.batchSampler);
    visit(x.sampler);
  };
  visit(root);
  return reached;
}

/** Walk `batchSampler`/`sampler` links from `root` and return the first object matching `pred`. */
export function findInChain<T>(root: unknown, pred: (o: unknown) => o is T): T | undefined {
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const o = stack.shift();
    if (o === null || typeof o !== 'object' || seen.has(o)) continue;
    seen.add(o);
    if (pred(o)) return o;
    const x = o as { batchSampler?: unknown; sampler?: unknown };
    stack.push(x.batchSampler, x.sampler);
  }
  return undefined;
}
