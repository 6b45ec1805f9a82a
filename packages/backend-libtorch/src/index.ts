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
export { wrapDistributed, unwrapDistributed, setGradientSync, noSync, triggerSyncInBackward, isDistributed, ddpInfo, joinDistributed, type DistributedDataParallelOptions, type DistributedDataParallelInfo, type JoinOptions } from './ddp.js';

import { registerSeedHook } from '@accelerate/core';
import type { Tensor } from './tensor.js';
// Prepared DataLoaders yield this package's tensors: type them so (see BackendTensorTypes).
declare module '@accelerate/core' {
  interface BackendTensorTypes {
    libtorch: Tensor;
  }
}
import { libtorch as libtorchFactory } from './backend.js';
import { manualSeed as seedTorch } from './runtime.js';
// core's setSeed seeds libtorch's generators at once, as Python's set_seed seeds torch.
registerSeedHook('libtorch', seedTorch);
/**
 * Discovery entry: `@accelerate/core`'s Accelerator imports installed backend
 * packages on demand and registers this (priority 10: preferred over tfjs).
 */
export const accelerateBackend = { name: 'libtorch', priority: 10, factory: libtorchFactory() } as const;
