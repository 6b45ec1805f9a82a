/**
 * `prepareDataLoader`: turn a user's {@link DataLoader} into the loader one
 * process should iterate (Accelerate's `prepare_data_loader`, spec §3.1).
 * @module
 */
import { DataLoader } from './dataloader.js';
import { isIterableDataset, type IterableDataset } from './dataset.js';
import { DataLoaderDispatcher, DataLoaderShard, type DeviceTransform, type DispatchSliceFn } from './loaders.js';
import { Generator, defaultGenerator, initialSeed } from './random.js';
import { BatchSampler, RandomSampler, SeedableRandomSampler, type BatchSamplerLike, type Sampler } from './sampler.js';
import type { BroadcastGroup } from './serialize.js';
import { BatchSamplerShard, IterableDatasetShard } from './shard.js';

/** Options of {@link prepareDataLoader} (Accelerate's arguments, camelCase). */
export interface PrepareDataLoaderOptions<B> {
  /** Processes sharing the data (default 1). With tensor/context parallelism pass the data-parallel size. */
  numProcesses?: number;
  /** This process's data-parallel index (default 0). */
  processIndex?: number;
  /** Cut each batch across processes instead of giving each its own batches (batch size must be a round multiple of P). */
  splitBatches?: boolean;
  /** Batches will be moved onto a device (the Accelerator passes true); makes streams dispatched by default. */
  putOnDevice?: boolean;
  /** Rank 0 reads and broadcasts. Default: true for iterable datasets when `putOnDevice`, else false. */
  dispatchBatches?: boolean;
  /** Complete the last round from the start so all ranks get equal full batches (default true). */
  evenBatches?: boolean;
  /** Replace a RandomSampler with a {@link SeedableRandomSampler} (order = f(seed, epoch)). */
  useSeedableSampler?: boolean;
  /** Seed of that sampler (default: the default generator's initial seed). */
  dataSeed?: number;
  /** Process group: required to dispatch with P > 1; used to synchronise the shuffling generator. */
  group?: BroadcastGroup;
  /** Slices a dispatched global batch for one process. */
  sliceFnForDispatch?: DispatchSliceFn<B>;
  /** Moves batches onto the device. */
  deviceTransform?: DeviceTransform<B>;
  /** RNGs to synchronise at each pass (Accelerate's `rng_types`); "generator" is dropped when there is nothing to synchronise. */
  rngTypes?: readonly string[];
}

/** The sampler the loader's batches are drawn from, and the batch sampler on top. */
function replaceSampler(batchSampler: BatchSamplerLike | undefined, sampler: Sampler): BatchSamplerLike | undefined {
  if (batchSampler instanceof BatchSampler) return new BatchSampler(sampler, batchSampler.batchSize, batchSampler.dropLast);
  if (batchSampler && 'sampler' in batchSampler) {
    try {
      // Accelerate assigns the new sampler into a custom batch sampler too.
      (batchSampler as { sampler?: Sampler }).sampler = sampler;
    } catch {
      // read-only: keep the custom batch sampler's own sampler
    }
  }
  return batchSampler;
}

/**
 * Wrap `loader` for one process of `numProcesses` (Accelerate's
 * `prepare_data_loader`). Returns a {@link DataLoaderDispatcher} when
 * dispatching, else a {@link DataLoaderShard} over a
 * {@link BatchSamplerShard} (map-style) or an {@link IterableDatasetShard}
 * (streams). With one process the loader keeps its batches but gains the
 * prepared-loader behaviour (GradientState, endOfDataloader, remainder,
 * device transform, exact resume).
 */
export function prepareDataLoader<T, B>(
  loader: DataLoader<T, B>,
  options: PrepareDataLoaderOptions<B> = {},
): DataLoaderShard<T, B> | DataLoaderDispatcher<T, B> {
  const numProcesses = options.numProcesses ?? 1;
  const processIndex = options.processIndex ?? 0;
  const splitBatches = options.splitBatches ?? false;
  const evenBatches = options.evenBatches ?? true;
  if (!Number.isSafeInteger(numProcesses) || numProcesses < 1) {
    throw new RangeError(`prepareDataLoader: numProcesses must be a positive integer, got ${String(numProcesses)}.`);
  }
  if (!Number.isSafeInteger(processIndex) || processIndex < 0 || processIndex >= numProcesses) {
    throw new RangeError(`prepareDataLoader: processIndex must be in [0, ${numProcesses - 1}], got ${String(processIndex)}.`);
  }
  const dataset = loader.dataset;
  const iterable = isIterableDataset(dataset);
  const dispatch = options.dispatchBatches ?? ((options.putOnDevice ?? false) && iterable);

  if (splitBatches) {
    const bs = loader.batchSize ?? loader.batchSampler?.batchSize;
    if (typeof bs !== 'number') {
      throw new RangeError(
        'prepareDataLoader: splitBatches (split_batches) needs a batch size to split, but the loader has batchSize null and its batch sampler has no batchSize. ' +
          'Give the batch sampler a batchSize, or use splitBatches: false.',
      );
    }
    // Accelerate exempts batch size 1, which then yields empty per-process batches; we refuse it instead.
    if (numProcesses > 1 && bs % numProcesses !== 0) {
      throw new RangeError(
        `prepareDataLoader: with splitBatches the batch size (${bs}) needs to be a round multiple of the number of processes (${numProcesses}). ` +
          `Use a batch size divisible by ${numProcesses}, or splitBatches: false.`,
      );
    }
  }

  // Seedable sampler: the order becomes a function of (seed, epoch) on every process.
  let sampler = loader.sampler;
  let batchSampler = loader.batchSampler;
  if (options.useSeedableSampler && sampler instanceof RandomSampler) {
    const seed = options.dataSeed ?? (sampler instanceof SeedableRandomSampler ? sampler.seed : initialSeed());
    sampler = new SeedableRandomSampler(sampler.dataLength, {
      seed,
      replacement: sampler.replacement,
      numSamples: sampler.length === sampler.dataLength ? undefined : sampler.length,
    });
    batchSampler = replaceSampler(batchSampler, sampler);
  }

  let synchronizedGenerator: Generator | undefined;
  let shardDataset: typeof dataset = dataset;
  if (numProcesses > 1 && !dispatch) {
    if (iterable) {
      if (loader.batchSize === null) {
        throw new TypeError('prepareDataLoader: an iterable dataset with batchSize null cannot be sharded; give the loader a batchSize.');
      }
      const gen = (dataset as { generator?: unknown }).generator;
      if (gen instanceof Generator) synchronizedGenerator = gen;
      shardDataset = new IterableDatasetShard(dataset as IterableDataset<T>, {
        batchSize: loader.batchSize,
        dropLast: loader.dropLast,
        numProcesses,
        processIndex,
        splitBatches,
      });
    } else {
      if (!batchSampler) {
        throw new TypeError(
          'prepareDataLoader: a loader without batching (batchSize null and no batch sampler) cannot be sharded across processes; give it a batchSize or a batchSampler.',
        );
      }
      if (!options.useSeedableSampler && sampler instanceof RandomSampler && !(sampler instanceof SeedableRandomSampler)) {
        // All processes must shuffle alike: give the sampler a generator, seeded from the default one, and keep it in sync.
        sampler.generator ??= new Generator(defaultGenerator().drawSeed());
        synchronizedGenerator = sampler.generator;
      }
      batchSampler = new BatchSamplerShard(batchSampler, { numProcesses, processIndex, splitBatches, evenBatches });
    }
  }
  const rngTypes = options.rngTypes?.filter((t) => t !== 'generator' || synchronizedGenerator !== undefined);
  const collate = loader.batchSize === null && !batchSampler ? {} : { collateFn: loader.collateFn };

  if (dispatch) {
    return new DataLoaderDispatcher<T, B>(dataset, {
      ...collate,
      ...(iterable
        ? { batchSize: loader.batchSize, dropLast: loader.dropLast }
        : batchSampler
          ? { batchSampler }
          : { batchSize: null, sampler }),
      splitBatches,
      numProcesses,
      processIndex,
      group: options.group,
      sliceFn: options.sliceFnForDispatch,
      deviceTransform: options.deviceTransform,
    });
  }
  let batching;
  if (shardDataset instanceof IterableDatasetShard) {
    batching = { batchSize: splitBatches ? loader.batchSize! / numProcesses : loader.batchSize, dropLast: loader.dropLast };
  } else if (iterable) {
    batching = { batchSize: loader.batchSize, dropLast: loader.dropLast };
  } else if (batchSampler) {
    batching = { batchSampler };
  } else {
    batching = { batchSize: null, sampler };
  }
  return new DataLoaderShard<T, B>(shardDataset, {
    ...collate,
    ...batching,
    synchronizedGenerator,
    group: options.group,
    rngTypes,
    deviceTransform: options.deviceTransform,
  });
}

export type { PreparedDataLoader } from './loaders.js';
