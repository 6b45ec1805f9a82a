/**
 * `@accelerate/big-modeling`: run models larger than memory, as Accelerate's
 * big-model inference. Build a model without allocating its weights
 * ({@link initEmptyWeights}), plan where each part goes
 * ({@link inferAutoDeviceMap}, {@link explainDeviceMap}), then load and place
 * it ({@link loadCheckpointAndDispatch}): GPU parts on their GPU, the rest in
 * cpu memory or on disk, streamed in by forward hooks just when needed.
 *
 * Every function takes the `Backend` first; the backend must implement
 * the optional big-modeling methods of the interface (libtorch does).
 * @packageDocumentation
 */
export * from './tree.js';
export * from './sizes.js';
export * from './memory.js';
export * from './device-map.js';
export * from './offload.js';
export * from './hooks.js';
export * from './dispatch.js';
export * from './checkpoint.js';
