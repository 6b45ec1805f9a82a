/**
 * The data pipeline: datasets, samplers, collation, the `DataLoader`, and
 * Accelerate's sharded / dispatched loaders with exact resume.
 * @module
 */
export {
  DEFAULT_SEED,
  Generator,
  defaultGenerator,
  deriveSeed,
  initialSeed,
  seedDataGenerator,
  resetDefaultGenerator,
  type GeneratorState,
} from './random.js';
export {
  ArrayDataset,
  TensorDataset,
  datasetLength,
  fromArray,
  fromIterable,
  isIterableDataset,
  isMapDataset,
  iterateDataset,
  tensorRow,
  type AnyDataset,
  type Dataset,
  type IterableDataset,
} from './dataset.js';
export {
  BatchSampler,
  RandomSampler,
  SeedableRandomSampler,
  SequentialSampler,
  SkipBatchSampler,
  iterateBatchSampler,
  propagateEpoch,
  type BatchSamplerLike,
  type RandomSamplerOptions,
  type RandomSamplerState,
  type ResumableBatchSampler,
  type ResumePoint,
  type Sampler,
  type SeedableRandomSamplerOptions,
  type SkippedIndices,
} from './sampler.js';
export {
  batchSizeOf,
  collateBatch,
  concatBatches,
  concatTensors,
  defaultCollate,
  sliceBatch,
  sliceRows,
  stackTensors,
  type Collated,
  type SelfCollating,
} from './collate.js';
export { broadcastBatch, broadcastBytes, decodeBatch, encodeBatch, type BroadcastGroup } from './serialize.js';
export { DataLoader, type DataLoaderOptions } from './dataloader.js';
export {
  BatchSamplerShard,
  IterableDatasetShard,
  type BatchSamplerShardOptions,
  type IterableDatasetShardOptions,
  type ShardOptions,
} from './shard.js';
export {
  DataLoaderDispatcher,
  DataLoaderShard,
  PreparedDataLoader,
  SkipDataLoader,
  skipFirstBatches,
  type DataLoaderDispatcherOptions,
  type DataLoaderShardOptions,
  type DataLoaderStateDict,
  type DeviceTransform,
  type DispatchSliceFn,
  type PassProgress,
  type PreparedLoaderOptions,
  type SkipDataLoaderOptions,
} from './loaders.js';
export { prepareDataLoader, type PrepareDataLoaderOptions } from './prepare.js';
