/**
 * `@accelerate/backend-libtorch`: libtorch for TypeScript. A PyTorch-like
 * `Tensor`, `nn` and `optim` over a native addon, and the `Backend` that
 * `@accelerate/core` drives (`libtorch()`).
 *
 * ```ts
 * import * as torch from '@accelerate/backend-libtorch';
 * const { nn, optim } = torch;
 * ```
 * @packageDocumentation
 */
export * from './tensor.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export * as jit from './jit.js';
export { autocast, isAutocastEnabled } from './amp.js';
export { LibtorchBackend, LibtorchGradScaler, libtorch, type LibtorchBackendOptions } from './backend.js';
export { manualSeed, getRngState, setRngState, setNumThreads, getNumThreads, version, cudaAvailable, emptyCache, allocatorStats, mallocStats, type AllocatorStats, type MallocStats } from './runtime.js';
export { GlooProcessGroup, DEFAULT_TIMEOUT_MS, DEFAULT_GLOO_THREADS, threadSettings, type GroupData, type ThreadSettings } from './distributed.js';
export { wrapDistributed, unwrapDistributed, setGradientSync, noSync, triggerSyncInBackward, isDistributed, ddpInfo, joinDistributed, type DistributedDataParallelInfo, type JoinOptions } from './ddp.js';

import type { Tensor } from './tensor.js';
// Prepared DataLoaders yield this package's tensors: type them so (see BackendTensorTypes).
declare module '@accelerate/core' {
  interface BackendTensorTypes {
    libtorch: Tensor;
  }
}
// Importing this package has no global effect: core finds the backend through package.json's
// `accelerate` field (./backend-entry.js) and seeds libtorch through ../seed-entry.cjs.
export { accelerateBackend } from './backend-entry.js';
