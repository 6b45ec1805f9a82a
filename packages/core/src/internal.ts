/**
 * `@accelerate/core/internal`: everything core has, for accelerate-ts's own
 * packages (`@accelerate/cli`, the backends, `@accelerate/big-modeling`,
 * `@accelerate/trackers`), its tests and benchmarks — launcher internals, the
 * configuration tables, checkpoint file plumbing, tensor codecs, the tracker
 * registry, … It is a superset of the root `@accelerate/core`.
 *
 * No stability promise: names here may change or disappear in any release.
 * Applications and third-party backends / plugins should use the root export;
 * ask for a name to be made public if you need one from here.
 * @packageDocumentation
 */
export * from './tensor/host-tensor.js';
export * from './interfaces/index.js';
export * from './state/index.js';
export * from './config/index.js';
export * from './data/index.js';
export * from './ops/index.js';
export * from './utils/index.js';
export * from './registry/index.js';
export * from './accelerator/index.js';
export * from './checkpoint/index.js';
export * from './tracking/index.js';
export * from './launch/index.js';
