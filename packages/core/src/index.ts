/**
 * `@accelerate/core`: state, configuration, data sharding, gradient
 * accumulation, collectives and the backend-agnostic `Accelerator`.
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
