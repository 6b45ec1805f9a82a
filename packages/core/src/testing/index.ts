/**
 * `@accelerate/core/testing`: tools for testing Accelerate and its backends —
 * the backend conformance suite, a pure-JS reference backend with Accelerate's
 * test fixtures (`RegressionModel`, `RegressionDataset`), a seedable PRNG and
 * an in-memory process group.
 * @packageDocumentation
 */
export * from './prng.js';
export * from './reference-tensor.js';
export * from './reference-nn.js';
export * from './reference-optim.js';
export * from './reference-backend.js';
export * from './regression-dataset.js';
export * from './conformance.js';
export * from './in-memory-group.js';
export * from './process-group-conformance.js';
