/**
 * Skipping the first batches of a pass (Accelerate's `skip_first_batches`,
 * `SkipBatchSampler`, `SkipDataLoader`); re-exported here for callers that
 * import them by topic.
 * @module
 */
export { SkipBatchSampler } from './sampler.js';
export { SkipDataLoader, skipFirstBatches, type SkipDataLoaderOptions } from './loaders.js';
