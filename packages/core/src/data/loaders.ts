/**
 * Prepared data loaders: {@link DataLoaderShard} (every process reads its
 * own shard), {@link DataLoaderDispatcher} (process 0 reads, batches are
 * broadcast and sliced), {@link SkipDataLoader} and
 * {@link skipFirstBatches}. Prepared loaders register with
 * {@link GradientState} while iterated, know when their last batch is being
 * processed (`endOfDataloader`), how many samples of the last global batch
 * are real (`remainder`), and can checkpoint their exact position
 * ({@link DataLoaderStateDict}).
 * @module
 */
import { GradientState, type ActiveLoader } from '../state/gradient-state.js';
import { batchSizeOf, concatBatches, sliceBatch, type Collated } from './collate.js';
import { DataLoader, isThenable, type DataLoaderOptions } from './dataloader.js';
import { datasetLength, isIterableDataset, iterateDataset, type AnyDataset, type Dataset } from './dataset.js';
import type { Generator, GeneratorState } from './random.js';
import {
  BatchSampler,
  RandomSampler,
  SeedableRandomSampler,
  SkipBatchSampler,
  findInChain,
  type BatchSamplerLike,
  type ResumePoint,
} from './sampler.js';
import { broadcastBatch, broadcastBytes, type BroadcastGroup } from './serialize.js';
import { BatchSamplerShard, IterableDatasetShard } from './shard.js';
import { getLogger } from '../utils/logging.js';

/** Warn once on the main process (or on the console before the accelerate state exists). */
function warnData(message: string): void {
  try {
    getLogger('accelerate.data').warning(message);
  } catch {
    console.warn(`[accelerate.data] ${message}`);
  }
}

/** A hook that moves a batch onto a device (set by the Accelerator from its backend). */
export type DeviceTransform<B> = (batch: B) => B | Promise<B>;

/**
 * Takes rows `[start, end)` of a global batch for one process (Accelerate's
 * `slice_fn_for_dispatch`). Default: {@link sliceBatch}.
 */
export type DispatchSliceFn<B> = (batch: B, start: number, end: number, processIndex: number, numProcesses: number) => B;

/**
 * A prepared loader's position, JSON-able and independent of the number of
 * processes: restoring it into a loader with another world size continues
 * the same global order at the same sample.
 */
export interface DataLoaderStateDict {
  /** Format version. */
  version: 1;
  /** Epoch the position refers to (the loader's `iteration`). */
  epoch: number;
  /** Samples of the epoch's global order already consumed, or null when batches vary in size (see `batchesConsumed`). */
  samplesConsumed: number | null;
  /** Batches of the unsharded batch sampler already consumed (null for streams and when counting samples). */
  batchesConsumed: number | null;
  /** Length of the dataset when saved (checked on load), or null for a stream without length. */
  datasetLength: number | null;
  /** Seed of the loader's {@link SeedableRandomSampler}, or null. */
  seed: number | null;
  /** State of a plain {@link RandomSampler}'s generator at the start of the epoch (replays its permutation), or null. */
  samplerGeneratorState: GeneratorState | null;
  /** Informational: global batch size and number of processes when saved. */
  totalBatchSize: number | null;
  numProcesses: number;
}

/** Options shared by the prepared loaders. */
export interface PreparedLoaderOptions<B> {
  /** Skip this many (per-process) batches at the start of every pass. */
  skipBatches?: number;
  /** Starting epoch (`iteration`). */
  iteration?: number;
  /** Moves each batch onto a device before it is handed out. */
  deviceTransform?: DeviceTransform<B>;
  /** Runs at the start of each pass (e.g. the Accelerator synchronising backend RNGs). */
  onIterationStart?: () => void | Promise<void>;
}

/** How far the current pass got (for exact resume). */
export interface PassProgress {
  /** Per-process steps handed out (including skipped ones). */
  steps: number;
  /** Where the pass started in the global order. */
  start: ResumePoint;
  /** Set when the pass ended normally. */
  completed: boolean;
}

function unwrapBatchSampler(bs: BatchSamplerLike | undefined): BatchSamplerLike | undefined {
  let b = bs;
  while (b instanceof SkipBatchSampler) b = b.batchSampler;
  if (b instanceof BatchSamplerShard) b = b.batchSampler;
  while (b instanceof SkipBatchSampler) b = b.batchSampler;
  return b;
}

const isSeedable = (o: unknown): o is SeedableRandomSampler => o instanceof SeedableRandomSampler;
const isPlainRandom = (o: unknown): o is RandomSampler => o instanceof RandomSampler && !(o instanceof SeedableRandomSampler);

/**
 * Behaviour shared by {@link DataLoaderShard} and
 * {@link DataLoaderDispatcher}: GradientState registration, end-of-loader
 * and remainder tracking, skipping, device transform and exact resume.
 */
export abstract class PreparedDataLoader<T = unknown, B = Collated<T>> extends DataLoader<T, B> implements ActiveLoader {
  /** True while the last batch of the pass is being processed. */
  endOfDataloader = false;
  /** Real samples in the last global batch, or -1 when unknown / dropped. */
  remainder = -1;
  /** Per-process batches skipped at the start of every pass. */
  skipBatches: number;
  /** Moves batches onto a device; set by the Accelerator. */
  deviceTransform: DeviceTransform<B> | undefined;
  /** Runs at the start of each pass. */
  onIterationStart: (() => void | Promise<void>) | undefined;
  protected readonly gradientState = new GradientState();
  protected progress: PassProgress | null = null;
  private pendingResume: { epoch: number; start: ResumePoint } | null = null;
  /** The loader {@link skipFirstBatches} made from this one last: while its pass runs, it holds this loader's position. */
  private skipView: PreparedDataLoader<T, B> | undefined;
  /** Set on a loader made by {@link skipFirstBatches} that took over a restored position: the parent moves to the next epoch when this pass completes. */
  private resumeParent: { loader: PreparedDataLoader<T, B>; epoch: number } | undefined;

  constructor(dataset: AnyDataset<T>, options: DataLoaderOptions<T, B> & PreparedLoaderOptions<B>) {
    const { skipBatches, iteration, deviceTransform, onIterationStart, ...base } = options;
    super(dataset, base);
    this.skipBatches = skipBatches ?? 0;
    if (!Number.isSafeInteger(this.skipBatches) || this.skipBatches < 0) {
      throw new RangeError(`skipBatches must be a non-negative integer, got ${String(skipBatches)}.`);
    }
    this.iteration = iteration ?? 0;
    this.deviceTransform = deviceTransform;
    this.onIterationStart = onIterationStart;
  }

  /** Samples in one global step across all processes, or undefined when batches vary in size. */
  abstract get totalBatchSize(): number | undefined;
  /** Processes sharing the global batch. */
  abstract get numProcesses(): number;
  /** Batches of the unsharded batch sampler one global step consumes. */
  protected abstract get innerBatchesPerStep(): number;

  /** Length of the whole (unsharded) dataset, when known. */
  get totalDatasetLength(): number | undefined {
    if (this.dataset instanceof IterableDatasetShard) return this.dataset.totalLength;
    return datasetLength(this.dataset);
  }

  /** Whether the global order's short last batch is dropped (from the original loader). */
  get dropLastEffective(): boolean {
    if (this.dataset instanceof IterableDatasetShard) return this.dataset.dropLast;
    if (this.batchSampler) return this.batchSampler.dropLast ?? false;
    return this.dropLast;
  }

  /** Whether resume positions are counted in samples (fixed batches over a sampler, streams) or in batches (custom batch samplers). */
  protected get countsSamples(): boolean {
    if (isIterableDataset(this.dataset) || !this.batchSampler) return true;
    return unwrapBatchSampler(this.batchSampler) instanceof BatchSampler;
  }

  /** Fixed size of the unsharded batch sampler's batches, if any. */
  protected get innerBatchSize(): number | undefined {
    const b = unwrapBatchSampler(this.batchSampler);
    if (b) return typeof b.batchSize === 'number' ? b.batchSize : undefined;
    return this.batchSize ?? 1;
  }

  /** Steps skipped by a {@link SkipBatchSampler} on top of the batch sampler (they count as consumed). */
  protected get samplerSkippedSteps(): number {
    return this.batchSampler instanceof SkipBatchSampler ? this.batchSampler.skipBatches : 0;
  }

  /**
   * True while a pass runs over an epoch the restored position says is finished:
   * a position saved after an epoch's last batch reads "epoch e + 1, nothing
   * consumed", and a loop that keeps its own epoch counter resumes at epoch e
   * (`setEpoch(e)`, or `skipFirstBatches` over the whole epoch). That pass yields
   * nothing and leaves the shuffling generators alone, so epoch e + 1 draws the
   * order the uninterrupted run drew.
   */
  protected finishedEpochPass = false;

  /** Prepare a pass: resume point, flags, remainder, GradientState registration. */
  protected async beginPass(): Promise<ResumePoint> {
    const pending = this.pendingResume;
    this.pendingResume = null;
    this.finishedEpochPass = pending !== null && isFinishedEpoch(pending, this.iteration);
    const start = pending && pending.epoch === this.iteration ? pending.start : {};
    await this.onIterationStart?.();
    this.endOfDataloader = false;
    this.remainder = -1;
    const n = this.totalDatasetLength;
    const total = this.totalBatchSize;
    if (!this.dropLastEffective && n !== undefined && total !== undefined && total > 0) {
      const skipped = (start.samples ?? 0) + (start.batches ?? 0) * (this.innerBatchSize ?? 0);
      this.remainder = Math.max(0, n - skipped) % total;
    }
    this.progress = { steps: this.samplerSkippedSteps, start, completed: false };
    this.gradientState.addDataloader(this);
    if (!this.finishedEpochPass) this.setEpoch(this.iteration);
    return start;
  }

  /** End a pass over a finished epoch (see {@link finishedEpochPass}): no batches, on to the next epoch. */
  protected skipFinishedEpoch(): void {
    this.finishedEpochPass = false;
    this.iteration++;
    this.endPass(true);
  }

  /** Unregister from GradientState (also on `break`). */
  protected endPass(completed: boolean): void {
    if (this.progress) this.progress.completed = completed;
    this.gradientState.removeDataloader(this);
    const parent = this.resumeParent;
    if (completed && parent) {
      this.resumeParent = undefined;
      // This pass was the parent's restored epoch: the parent continues with the next one.
      if (parent.loader.iteration === parent.epoch) parent.loader.iteration = this.iteration;
    }
  }

  /**
   * Used by {@link skipFirstBatches}: `child` (made from this loader) becomes
   * the view of this loader's current epoch, and takes over a position
   * restored by {@link loadStateDict} (which then no longer applies to this
   * loader's next pass). Returns the position taken over, or null.
   * @internal
   */
  attachSkipView(child: PreparedDataLoader<T, B>): { epoch: number; start: ResumePoint } | null {
    this.skipView = child;
    const pending = this.pendingResume;
    if (!pending || (pending.epoch !== this.iteration && !isFinishedEpoch(pending, this.iteration))) return null;
    this.pendingResume = null;
    child.pendingResume = pending;
    child.iteration = this.iteration;
    child.resumeParent = { loader: this, epoch: this.iteration };
    return pending;
  }

  /** The restored position waiting for the next pass, if any. @internal */
  get pendingPosition(): { epoch: number; start: ResumePoint } | null {
    return this.pendingResume;
  }

  /**
   * The loader's position: epoch, and how much of the epoch's global order
   * has been consumed (the batch being processed counts as consumed). At the
   * last batch of an epoch the position is the start of the next epoch.
   */
  stateDict(): DataLoaderStateDict {
    // While a skipFirstBatches view of this epoch is part-way, it holds the position.
    const view = this.skipView;
    if (view && view.progress && !view.progress.completed && view.iteration === this.iteration && this.pendingResume === null) {
      return view.stateDict();
    }
    const seedable = findInChain(this.batchSampler ?? this.sampler, isSeedable);
    const random = findInChain(this.batchSampler ?? this.sampler, isPlainRandom);
    const n = this.totalDatasetLength ?? null;
    const total = this.totalBatchSize;
    const base = {
      version: 1 as const,
      datasetLength: n,
      seed: seedable ? seedable.seed : null,
      totalBatchSize: total ?? null,
      numProcesses: this.numProcesses,
    };
    const pending = this.pendingResume;
    if (pending) {
      return {
        ...base,
        epoch: pending.epoch,
        samplesConsumed: pending.start.samples ?? (this.countsSamples ? 0 : null),
        batchesConsumed: pending.start.batches ?? (this.countsSamples ? null : 0),
        samplerGeneratorState: random ? random.stateDict().generator : null,
      };
    }
    const p = this.progress;
    const atEpochStart = (epoch: number): DataLoaderStateDict => ({
      ...base,
      epoch,
      samplesConsumed: this.countsSamples ? 0 : null,
      batchesConsumed: this.countsSamples ? null : 0,
      // The next pass continues an own generator from its current state.
      samplerGeneratorState: random?.generator ? random.generator.getState() : null,
    });
    if (p === null || p.completed) return atEpochStart(this.iteration);
    if (this.endOfDataloader) return atEpochStart(this.iteration + 1);
    const generatorAtStart = random ? random.stateDict().generator : null;
    if (this.countsSamples) {
      if (total === undefined) {
        throw new RangeError('stateDict: this loader has no fixed global batch size, so its position cannot be counted in samples.');
      }
      let samples = (p.start.samples ?? 0) + (p.start.batches ?? 0) * (this.innerBatchSize ?? 0) + p.steps * total;
      if (n !== null && samples >= n) return atEpochStart(this.iteration + 1);
      if (n !== null) samples = Math.min(samples, n);
      return { ...base, epoch: this.iteration, samplesConsumed: samples, batchesConsumed: null, samplerGeneratorState: generatorAtStart };
    }
    const innerLength = unwrapBatchSampler(this.batchSampler)?.length;
    const batches = (p.start.batches ?? 0) + p.steps * this.innerBatchesPerStep;
    if (innerLength !== undefined && batches >= innerLength) return atEpochStart(this.iteration + 1);
    return { ...base, epoch: this.iteration, samplesConsumed: null, batchesConsumed: batches, samplerGeneratorState: generatorAtStart };
  }

  /**
   * Restore a position from {@link stateDict}: the next pass (if it is for
   * the saved epoch) continues the same global order at the saved sample,
   * whatever the number of processes now. Call before iterating; a
   * `setEpoch` to another epoch discards the position, except that a position
   * saved after the last batch of epoch e (it reads "epoch e + 1, nothing
   * consumed") makes a pass over epoch e empty, so loops that count epochs
   * themselves and resume at e continue exactly.
   */
  loadStateDict(state: DataLoaderStateDict): void {
    if (state === null || typeof state !== 'object' || state.version !== 1) {
      throw new TypeError(`loadStateDict: expected a data loader state with version 1 (from stateDict()), got ${JSON.stringify(state)}.`);
    }
    if (!Number.isSafeInteger(state.epoch) || state.epoch < 0) {
      throw new RangeError(`loadStateDict: epoch must be a non-negative integer, got ${String(state.epoch)}.`);
    }
    const n = this.totalDatasetLength;
    if (state.datasetLength !== null && n !== undefined && state.datasetLength !== n) {
      throw new RangeError(
        `loadStateDict: the state was saved for a dataset of ${state.datasetLength} samples but this loader's dataset has ${n}; a position in one order means nothing in the other. Restore into a loader over the same dataset.`,
      );
    }
    const seedable = findInChain(this.batchSampler ?? this.sampler, isSeedable);
    const random = findInChain(this.batchSampler ?? this.sampler, isPlainRandom);
    if (state.seed !== null) {
      if (!seedable) {
        throw new TypeError(
          `loadStateDict: the state was saved from a loader shuffled by a SeedableRandomSampler (seed ${state.seed}) but this loader has none, so it cannot replay that order. ` +
            'Prepare it with useSeedableSampler: true (or shuffle with a seed).',
        );
      }
      seedable.seed = state.seed;
    }
    if (state.samplerGeneratorState !== null) {
      if (!random) {
        throw new TypeError(
          'loadStateDict: the state holds a shuffling generator state (a RandomSampler) but this loader has no RandomSampler to restore it into. Build the loader with shuffle: true.',
        );
      }
      random.loadStateDict({ generator: state.samplerGeneratorState });
    }
    let start: ResumePoint;
    if (state.samplesConsumed !== null) {
      const s = state.samplesConsumed;
      if (!Number.isSafeInteger(s) || s < 0) throw new RangeError(`loadStateDict: samplesConsumed must be a non-negative integer, got ${String(s)}.`);
      if (!this.countsSamples) {
        const size = this.innerBatchSize;
        if (size === undefined || s % size !== 0) {
          throw new RangeError(
            `loadStateDict: the state is ${s} samples into epoch ${state.epoch}, but this loader's batch sampler yields ` +
              `${size === undefined ? 'batches of varying size' : `batches of ${size}`} and cannot start part-way through a batch. ` +
              'Resume with the batch sampler the state was saved with, or one whose batch size divides the position.',
          );
        }
        start = { batches: s / size };
      } else {
        start = s > 0 ? { samples: s } : {};
      }
    } else if (state.batchesConsumed !== null) {
      const b = state.batchesConsumed;
      if (!Number.isSafeInteger(b) || b < 0) throw new RangeError(`loadStateDict: batchesConsumed must be a non-negative integer, got ${String(b)}.`);
      if (this.countsSamples && b > 0) {
        throw new RangeError(
          `loadStateDict: the state counts ${b} batches of a custom (variable-size) batch sampler, but this loader batches a sampler with a fixed batch size, so the sample position is unknown. ` +
            'Resume with the same batch sampler the state was saved with.',
        );
      }
      start = b > 0 ? { batches: b } : {};
    } else {
      throw new TypeError('loadStateDict: the state has neither samplesConsumed nor batchesConsumed.');
    }
    this.iteration = state.epoch;
    this.progress = null;
    this.skipView = undefined;
    this.pendingResume = { epoch: state.epoch, start };
  }
}

/** Options of {@link DataLoaderShard}. */
export interface DataLoaderShardOptions<T, B> extends DataLoaderOptions<T, B>, PreparedLoaderOptions<B> {
  /** A generator every process must share (the shuffling sampler's); synchronised from rank 0 at each pass when `rngTypes` has "generator". */
  synchronizedGenerator?: Generator;
  /** Group used to synchronise `synchronizedGenerator`. */
  group?: BroadcastGroup;
  /** RNGs to synchronise at each pass; only "generator" is handled here (others via `onIterationStart`). */
  rngTypes?: readonly string[];
}

/**
 * Accelerate's `DataLoaderShard`: a loader over this process's shard that
 * iterates one batch ahead, so `endOfDataloader` is already true while the
 * last batch is processed, and registers itself with {@link GradientState}
 * for the duration of a pass (also when the consumer `break`s).
 */
export class DataLoaderShard<T = unknown, B = Collated<T>> extends PreparedDataLoader<T, B> {
  /** Generator all processes must share, synchronised from rank 0 at each pass. */
  synchronizedGenerator: Generator | undefined;
  /** Group used for that synchronisation. */
  group: BroadcastGroup | undefined;
  /** RNG kinds synchronised at each pass ("generator" is handled here). */
  rngTypes: readonly string[] | undefined;

  constructor(dataset: AnyDataset<T>, options: DataLoaderShardOptions<T, B> = {}) {
    const { synchronizedGenerator, group, rngTypes, ...rest } = options;
    super(dataset, rest);
    this.synchronizedGenerator = synchronizedGenerator;
    this.group = group;
    this.rngTypes = rngTypes;
  }

  /** bs * P, or bs with splitBatches; undefined for variable-size batches. */
  get totalBatchSize(): number | undefined {
    const ds = this.dataset;
    if (ds instanceof IterableDatasetShard) return ds.globalBatchSize;
    let b = this.batchSampler;
    while (b instanceof SkipBatchSampler) b = b.batchSampler;
    if (b instanceof BatchSamplerShard) {
      if (b.batchSize === undefined) return undefined;
      return b.splitBatches ? b.batchSize : b.batchSize * b.numProcesses;
    }
    if (b) return typeof b.batchSize === 'number' ? b.batchSize : undefined;
    // Without batching each step is one sample.
    return this.batchSize ?? 1;
  }

  get numProcesses(): number {
    if (this.dataset instanceof IterableDatasetShard) return this.dataset.numProcesses;
    let b = this.batchSampler;
    while (b instanceof SkipBatchSampler) b = b.batchSampler;
    return b instanceof BatchSamplerShard ? b.numProcesses : 1;
  }

  protected get innerBatchesPerStep(): number {
    let b = this.batchSampler;
    while (b instanceof SkipBatchSampler) b = b.batchSampler;
    return b instanceof BatchSamplerShard && !b.splitBatches ? b.numProcesses : 1;
  }

  override [Symbol.asyncIterator](): AsyncIterator<B> {
    return this.iterate();
  }

  private async syncGenerator(): Promise<void> {
    const g = this.group;
    const gen = this.synchronizedGenerator;
    if (!g || g.size <= 1 || !gen || !this.rngTypes?.includes('generator')) return;
    const payload = g.rank === 0 ? new TextEncoder().encode(JSON.stringify(gen.getState())) : null;
    const bytes = await broadcastBytes(g, payload, 0);
    if (g.rank !== 0) gen.setState(JSON.parse(new TextDecoder().decode(bytes)) as GeneratorState);
  }

  private async *iterate(): AsyncGenerator<B, void, undefined> {
    await this.syncGenerator();
    const start = await this.beginPass();
    if (this.finishedEpochPass) return this.skipFinishedEpoch();
    let completed = false;
    // A map-style dataset with a batch sampler is pulled synchronously (awaiting only what is a
    // promise): this runs on every training step, and each async generator in between costs.
    const sync = !isIterableDataset(this.dataset) && this.batchSampler ? this.mapBatches(start) : undefined;
    const inner = sync ?? this.rawBatches(start);
    try {
      const first = sync ? sync.next() : await inner.next();
      if (first.done) {
        completed = true;
        return;
      }
      let value = isThenable(first.value) ? await first.value : first.value;
      let index = 0;
      for (;;) {
        let batch = value;
        if (this.deviceTransform) {
          const moved = this.deviceTransform(batch);
          batch = isThenable(moved) ? await moved : moved;
        }
        // One batch ahead: know whether this one is the last before handing it out.
        const next = sync ? sync.next() : await inner.next();
        if (next.done) this.endOfDataloader = true;
        else value = isThenable(next.value) ? await next.value : next.value;
        this.progress!.steps++;
        if (index >= this.skipBatches) yield batch;
        index++;
        if (next.done) break;
      }
      this.iteration++;
      completed = true;
    } finally {
      if (!completed) await inner.return?.(undefined);
      this.endPass(completed);
    }
  }
}

/** Options of {@link DataLoaderDispatcher}. */
export interface DataLoaderDispatcherOptions<T, B> extends DataLoaderOptions<T, B>, PreparedLoaderOptions<B> {
  /** One base batch is cut into P slices (instead of P base batches concatenated and sliced). */
  splitBatches?: boolean;
  /** Processes sharing the batches (default: the group's size, or 1). */
  numProcesses?: number;
  /** This process's index (default: the group's rank, or 0). */
  processIndex?: number;
  /** Carries batches from rank 0; required when numProcesses > 1. */
  group?: BroadcastGroup;
  /** How a global batch is sliced for one process (default {@link sliceBatch}). */
  sliceFn?: DispatchSliceFn<B>;
}

interface DispatchMessage<B> {
  batch: B;
  last: boolean;
  /** Resumed pass, last batch: rows of the epoch's first global batch to complete it with. */
  pad?: B;
}

/**
 * Accelerate's `DataLoaderDispatcher`: only process 0 iterates the
 * underlying loader; each global batch (P base batches concatenated, or one
 * base batch with `splitBatches`) is broadcast through the process group and
 * every process keeps its slice. A final global batch whose size is not a
 * multiple of P is completed with the first P rows of the first batch, so
 * per-process last batches may be smaller; `remainder` is then the real size
 * of that last global batch. `evenBatches` does not apply.
 */
export class DataLoaderDispatcher<T = unknown, B = Collated<T>> extends PreparedDataLoader<T, B> {
  /** One base batch is sliced across processes (else P base batches are concatenated first). */
  readonly splitBatches: boolean;
  /** This process's index. */
  readonly processIndex: number;
  /** Group carrying batches from rank 0 (undefined on one process). */
  readonly group: BroadcastGroup | undefined;
  /** Slices a global batch for one process. */
  readonly sliceFn: DispatchSliceFn<B>;
  private readonly worldSize: number;

  constructor(dataset: AnyDataset<T>, options: DataLoaderDispatcherOptions<T, B> = {}) {
    const { splitBatches, numProcesses, processIndex, group, sliceFn, ...rest } = options;
    super(dataset, rest);
    this.splitBatches = splitBatches ?? false;
    this.group = group;
    this.worldSize = numProcesses ?? group?.size ?? 1;
    this.processIndex = processIndex ?? group?.rank ?? 0;
    this.sliceFn = sliceFn ?? ((batch, s, e) => sliceBatch(batch, s, e));
    const P = this.worldSize;
    if (!Number.isSafeInteger(P) || P < 1) throw new RangeError(`DataLoaderDispatcher: numProcesses must be a positive integer, got ${String(P)}.`);
    if (!Number.isSafeInteger(this.processIndex) || this.processIndex < 0 || this.processIndex >= P) {
      throw new RangeError(`DataLoaderDispatcher: processIndex must be in [0, ${P - 1}], got ${String(this.processIndex)}.`);
    }
    if (P > 1 && !group) {
      throw new TypeError(
        `DataLoaderDispatcher: numProcesses is ${P}, so batches must be broadcast from process 0 through a process group; pass options.group (the Accelerator passes its ProcessGroup).`,
      );
    }
    if (group && (group.size !== P || group.rank !== this.processIndex)) {
      throw new RangeError(
        `DataLoaderDispatcher: the group has size ${group.size} and rank ${group.rank} but numProcesses is ${P} and processIndex ${this.processIndex}; they must match.`,
      );
    }
    if (this.splitBatches && P > 1) {
      const bs = this.batchSize ?? this.batchSampler?.batchSize;
      if (typeof bs !== 'number' || bs % P !== 0) {
        throw new RangeError(
          `DataLoaderDispatcher: with splitBatches the batch size (${String(bs)}) needs to be a round multiple of the number of processes (${P}).`,
        );
      }
    }
  }

  get numProcesses(): number {
    return this.worldSize;
  }

  /** bs * P, or bs with splitBatches; undefined for variable-size batches. */
  get totalBatchSize(): number | undefined {
    const bs = this.batchSampler ? this.batchSampler.batchSize : this.batchSize;
    if (typeof bs !== 'number') return undefined;
    return this.splitBatches ? bs : bs * this.worldSize;
  }

  protected get innerBatchesPerStep(): number {
    return this.splitBatches ? 1 : this.worldSize;
  }

  /** Our SkipBatchSampler skips underlying batches: convert back to steps. */
  protected override get samplerSkippedSteps(): number {
    return this.batchSampler instanceof SkipBatchSampler ? Math.floor(this.batchSampler.skipBatches / this.innerBatchesPerStep) : 0;
  }

  /** Steps per pass: the base length (split), floor (dropLast) or ceil of base length / P. */
  override lengthOrUndefined(): number | undefined {
    const whole = super.lengthOrUndefined();
    if (whole === undefined) return undefined;
    if (this.splitBatches) return whole;
    return this.dropLastEffective ? Math.floor(whole / this.worldSize) : Math.ceil(whole / this.worldSize);
  }

  override [Symbol.asyncIterator](): AsyncIterator<B> {
    return this.iterate();
  }

  /** Rank 0: global batches of the underlying loader. */
  private async *globalBatches(start: ResumePoint, onIndices?: (indices: number[]) => void): AsyncGenerator<B, void, undefined> {
    const it = this.rawBatches(start, onIndices);
    try {
      if (this.splitBatches) {
        yield* it;
        return;
      }
      for (;;) {
        const parts: B[] = [];
        for (let i = 0; i < this.worldSize; i++) {
          const r = await it.next();
          if (r.done) break;
          parts.push(r.value);
        }
        if (parts.length === 0) return;
        if (parts.length < this.worldSize && this.dropLastEffective) return;
        yield this.concat(parts);
        if (parts.length < this.worldSize) return;
      }
    } finally {
      await it.return(undefined);
    }
  }

  private concat(parts: B[]): B {
    if (parts.length === 1) return parts[0];
    try {
      return concatBatches(parts);
    } catch (e) {
      throw new RangeError(
        'DataLoaderDispatcher: batches of different shapes cannot be dispatched together. Pass dispatchBatches: false so each process reads its own batches, ' +
          `or splitBatches: true so process 0 reads one full batch and slices it. (${(e as Error).message})`,
        { cause: e },
      );
    }
  }

  /**
   * Rank 0 of a resumed pass: the first P rows of the epoch's first global
   * batch (what an uninterrupted pass completes its last batch with), built
   * from the epoch's first indices (map-style) or by reading the stream's
   * start again.
   */
  private async epochHeadRows(head: number[]): Promise<B | undefined> {
    const total = this.totalBatchSize;
    const bs = this.batchSampler ? this.batchSampler.batchSize : this.batchSize;
    if (total === undefined || typeof bs !== 'number') return undefined;
    const ds = this.dataset;
    let samples: T[] = [];
    if (isIterableDataset(ds)) {
      for await (const x of iterateDataset(ds, 0)) {
        samples.push(x);
        if (samples.length === total) break;
      }
    } else if (this.batchSampler) {
      const map = ds as Dataset<T>;
      samples = await Promise.all(head.slice(0, total).map((i) => map.get(i)));
    } else {
      return undefined;
    }
    if (samples.length === 0) return undefined;
    // Collate in the loader's batches, as the uninterrupted pass did, then join them.
    const parts: B[] = [];
    for (let i = 0; i < samples.length; i += bs) parts.push(await this.collateFn(samples.slice(i, i + bs)));
    const P = this.worldSize;
    return this.sliceFn(this.concat(parts), 0, P, this.processIndex, P);
  }

  private async *iterate(): AsyncGenerator<B, void, undefined> {
    const start = await this.beginPass();
    if (this.finishedEpochPass) return this.skipFinishedEpoch();
    const P = this.worldSize;
    const p = this.processIndex;
    const resumed = (start.samples ?? 0) > 0 || (start.batches ?? 0) > 0;
    const head: number[] = [];
    const total = this.totalBatchSize ?? 0;
    const onIndices = resumed && p === 0 ? (ix: number[]) => void (head.length < total && head.push(...ix)) : undefined;
    const source = p === 0 ? this.globalBatches(start, onIndices) : undefined;
    let ahead: IteratorResult<B, void> | undefined;
    let completed = false;
    const fetch = async (): Promise<DispatchMessage<B> | null> => {
      let local: DispatchMessage<B> | null = null;
      if (source) {
        ahead ??= await source.next();
        if (!ahead.done) {
          const next = await source.next();
          local = { batch: ahead.value, last: next.done === true };
          ahead = next;
          if (local.last && resumed && !this.dropLastEffective && P > 1 && (batchSizeOf(local.batch) ?? 0) % P !== 0) {
            local.pad = await this.epochHeadRows(head);
          }
        }
      }
      if (!this.group || P === 1) return local;
      const msg = await broadcastBatch(
        this.group,
        p === 0 ? (local === null ? { end: true } : { end: false, last: local.last, batch: local.batch, ...(local.pad !== undefined ? { pad: local.pad } : {}) }) : undefined,
        0,
      );
      const m = msg as { end: boolean; last?: boolean; batch?: B; pad?: B };
      return m.end ? null : { batch: m.batch as B, last: m.last === true, pad: m.pad };
    };
    try {
      let msg = await fetch();
      if (msg === null) {
        completed = true;
        return;
      }
      let first: B | undefined;
      let index = 0;
      for (;;) {
        let batch = msg.batch;
        const observed = batchSizeOf(batch);
        if (observed === undefined) {
          throw new TypeError('DataLoaderDispatcher: cannot find the batch dimension (no tensor, typed array or per-sample array in the batch), so it cannot be split across processes.');
        }
        if (!this.dropLastEffective && first === undefined) first = this.sliceFn(batch, 0, P, p, P);
        let per = Math.floor(observed / P);
        if (msg.last && !this.dropLastEffective && observed % P !== 0) {
          // Complete the last global batch with rows from the first one.
          batch = concatBatches([batch, (msg.pad ?? first) as B]);
          per += 1;
        }
        let mine = this.sliceFn(batch, p * per, (p + 1) * per, p, P);
        if (msg.last) {
          this.endOfDataloader = true;
          this.remainder = observed;
        }
        if (this.deviceTransform) mine = await this.deviceTransform(mine);
        this.progress!.steps++;
        if (index >= this.skipBatches) yield mine;
        index++;
        if (msg.last) break;
        msg = await fetch();
        if (msg === null) break;
      }
      this.iteration++;
      completed = true;
    } finally {
      if (source) await source.return(undefined);
      this.endPass(completed);
    }
  }
}

/** Options of {@link SkipDataLoader}. */
export interface SkipDataLoaderOptions<T, B> extends DataLoaderOptions<T, B> {
  /** Batches to skip at the start of every pass. */
  skipBatches?: number;
}

/**
 * Accelerate's `SkipDataLoader`: a plain loader that skips its first
 * `skipBatches` batches (for streams; map-style datasets skip cheaper with a
 * {@link SkipBatchSampler}). Registers with GradientState while iterated.
 */
export class SkipDataLoader<T = unknown, B = Collated<T>> extends DataLoader<T, B> implements ActiveLoader {
  readonly skipBatches: number;
  endOfDataloader = false;
  remainder = -1;
  private readonly gradientState = new GradientState();

  constructor(dataset: AnyDataset<T>, options: SkipDataLoaderOptions<T, B> = {}) {
    const { skipBatches, ...rest } = options;
    super(dataset, rest);
    this.skipBatches = skipBatches ?? 0;
    if (!Number.isSafeInteger(this.skipBatches) || this.skipBatches < 0) {
      throw new RangeError(`SkipDataLoader: skipBatches must be a non-negative integer, got ${String(skipBatches)}.`);
    }
  }

  override lengthOrUndefined(): number | undefined {
    const n = super.lengthOrUndefined();
    return n === undefined ? undefined : Math.max(0, n - this.skipBatches);
  }

  override [Symbol.asyncIterator](): AsyncIterator<B> {
    return this.iterate();
  }

  private async *iterate(): AsyncGenerator<B, void, undefined> {
    this.endOfDataloader = false;
    this.remainder = -1;
    const n = datasetLength(this.dataset);
    if (!this.dropLast && n !== undefined && this.batchSize) this.remainder = n % this.batchSize;
    this.gradientState.addDataloader(this);
    try {
      let index = 0;
      for await (const batch of this.rawBatches()) {
        if (index++ >= this.skipBatches) yield batch;
      }
    } finally {
      this.gradientState.removeDataloader(this);
    }
  }
}

/**
 * A loader that starts `numBatches` (per-process) batches into the pass
 * (Accelerate's `skip_first_batches`), keeping the loader's kind, epoch
 * (`iteration`), device transform and synchronisation. Map-style loaders
 * skip in the batch sampler (nothing is read); streams read and discard.
 * For a dispatcher each step is P batches of the underlying loader (one with
 * splitBatches); Accelerate skips only `numBatches` there, which we treat as
 * a bug. Use it for the resumed epoch only, or prefer
 * `loadStateDict` which also restores the epoch and shuffling.
 *
 * On a prepared loader with a position restored by `loadStateDict` /
 * `loadState` (for its current epoch), the returned loader takes that
 * position over instead of skipping `numBatches` on top of it (one warning
 * says what would have been skipped twice): the position then no longer
 * applies to the original loader, whose next pass, once the returned loader
 * has finished the epoch, is the next epoch. While the returned loader is
 * part-way through its pass, the original loader's `stateDict()` reports
 * the returned loader's position (so `saveState` keeps it).
 */
export function skipFirstBatches<T, B>(loader: DataLoader<T, B>, numBatches = 0): DataLoader<T, B> {
  if (!Number.isSafeInteger(numBatches) || numBatches < 0) {
    throw new RangeError(`skipFirstBatches: numBatches must be a non-negative integer, got ${String(numBatches)}.`);
  }
  if (!(loader instanceof PreparedDataLoader)) return buildSkipped(loader, numBatches);
  const pending = loader.pendingPosition;
  if (pending !== null && isFinishedEpoch(pending, loader.iteration)) {
    // The restored position says this epoch is finished: the view is an empty pass, whatever it skips.
    const out = buildSkipped(loader, 0) as PreparedDataLoader<T, B>;
    loader.attachSkipView(out);
    return out;
  }
  if (pending === null || pending.epoch !== loader.iteration) {
    const out = buildSkipped(loader, numBatches) as PreparedDataLoader<T, B>;
    loader.attachSkipView(out);
    return out;
  }
  // A restored position already resumes the epoch: the view takes it over (so it does not also
  // apply to the loader's next pass) instead of skipping again on top of it.
  const out = buildSkipped(loader, 0) as PreparedDataLoader<T, B>;
  loader.attachSkipView(out);
  if (numBatches > 0) warnData(doubleSkipMessage(loader, pending, numBatches));
  return out;
}

function doubleSkipMessage<T, B>(loader: PreparedDataLoader<T, B>, pending: { epoch: number; start: ResumePoint }, numBatches: number): string {
  const total = loader.totalBatchSize;
  let where: string;
  let dropped: string;
  if (pending.start.samples !== undefined || pending.start.batches === undefined) {
    const s = pending.start.samples ?? 0;
    const steps = total !== undefined && s % total === 0 ? ` = ${s / total} batches of ${total} across ${loader.numProcesses} process(es)` : '';
    where = `${s} samples of epoch ${pending.epoch} already consumed${steps}`;
    dropped =
      total !== undefined
        ? `samples ${s}..${s + numBatches * total - 1} of the epoch's order (${numBatches} more step(s))`
        : `${numBatches} more batch(es) after sample ${s}`;
  } else {
    const b = pending.start.batches;
    where = `${b} batches of epoch ${pending.epoch} already consumed`;
    dropped = `${numBatches} more step(s) after batch ${b}`;
  }
  return (
    `skipFirstBatches(loader, ${numBatches}): this loader has a position restored by loadState/loadStateDict (${where}), ` +
    'so its next pass already resumes mid-epoch and skipFirstBatches is not needed. ' +
    `Skipping on top of it would double-skip ${dropped}. The returned loader resumes at the restored position and ignores numBatches; ` +
    'the restored position no longer applies to later passes of the original loader (its next pass is the next epoch). ' +
    'After loadState, iterate the prepared loader directly instead.'
  );
}

/** Build the skipping loader of the same kind as `loader`. */
function buildSkipped<T, B>(loader: DataLoader<T, B>, numBatches: number): DataLoader<T, B> {
  const ds = loader.dataset;
  const byLoader = isIterableDataset(ds) || !loader.batchSampler;
  const batching: DataLoaderOptions<T, B> = byLoader
    ? { batchSize: loader.batchSize, dropLast: loader.dropLast, sampler: isIterableDataset(ds) ? undefined : loader.sampler }
    : {};
  if (!byLoader) batching.batchSize = null;
  const batches = !(byLoader && loader.batchSize === null);
  const common: DataLoaderOptions<T, B> = batches ? { collateFn: loader.collateFn } : {};
  if (loader instanceof DataLoaderDispatcher) {
    const steps = numBatches * (loader.splitBatches ? 1 : loader.numProcesses);
    const out = new DataLoaderDispatcher<T, B>(ds, {
      ...batching,
      ...common,
      ...(byLoader ? { skipBatches: numBatches } : { batchSampler: new SkipBatchSampler(loader.batchSampler!, steps) }),
      splitBatches: loader.splitBatches,
      numProcesses: loader.numProcesses,
      processIndex: loader.processIndex,
      group: loader.group,
      sliceFn: loader.sliceFn,
      iteration: loader.iteration,
      deviceTransform: loader.deviceTransform,
      onIterationStart: loader.onIterationStart,
    });
    return out;
  }
  if (loader instanceof DataLoaderShard) {
    return new DataLoaderShard<T, B>(ds, {
      ...batching,
      ...common,
      ...(byLoader ? { skipBatches: numBatches } : { batchSampler: new SkipBatchSampler(loader.batchSampler!, numBatches) }),
      iteration: loader.iteration,
      deviceTransform: loader.deviceTransform,
      onIterationStart: loader.onIterationStart,
      synchronizedGenerator: loader.synchronizedGenerator,
      group: loader.group,
      rngTypes: loader.rngTypes,
    });
  }
  if (byLoader) return new SkipDataLoader<T, B>(ds, { ...batching, ...common, skipBatches: numBatches });
  return new DataLoader<T, B>(ds, { ...common, batchSampler: new SkipBatchSampler(loader.batchSampler!, numBatches) });
}

/** A restored position at the start of epoch `iteration + 1`: epoch `iteration` is finished. */
function isFinishedEpoch(pending: { epoch: number; start: ResumePoint }, iteration: number): boolean {
  return pending.epoch === iteration + 1 && (pending.start.samples ?? 0) === 0 && (pending.start.batches ?? 0) === 0;
}
