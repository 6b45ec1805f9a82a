/**
 * `Accelerator.joinUnevenInputs`: training or evaluation when ranks have different
 * numbers of batches (Accelerate's `join_uneven_inputs`, over torch's `Join`).
 * The shadowing of collectives is the backend's job ({@link Backend.joinUnevenInputs});
 * this module decides when it applies and overrides the prepared loaders' `evenBatches`.
 * @module
 */
import type { Backend } from '../interfaces/backend.js';
import type { DistributionStrategy } from '../interfaces/strategy.js';
import { DataLoaderDispatcher, DataLoaderShard } from '../data/loaders.js';
import { BatchSamplerShard } from '../data/shard.js';
import { SkipBatchSampler } from '../data/sampler.js';
import { DistributedType } from '../state/distributed-type.js';

/** Options of `Accelerator.joinUnevenInputs`. */
export interface JoinUnevenInputsOptions {
  /**
   * Override the `evenBatches` of every prepared map-style loader while `fn` runs
   * (restored afterwards). Join is enabled only when the effective value is false;
   * default: the Accelerator's `evenBatches`.
   */
  evenBatches?: boolean;
  /**
   * Divide gradients by the initial world size (default true), as if ranks that ran
   * out of batches contributed zeros; false divides by the number of ranks still active.
   */
  divideByInitialWorldSize?: boolean;
}

/** What {@link joinUnevenInputs} needs from the Accelerator. */
export interface JoinHost {
  ready(): Promise<unknown>;
  readonly backend: Backend<any, any, any, any>;
  /** The active distribution strategy (its `joinUnevenInputs` does the joining). */
  readonly strategy: DistributionStrategy<any, any>;
  readonly useDistributed: boolean;
  readonly distributedType: DistributedType;
  readonly evenBatches: boolean;
  readonly dataloaders: readonly unknown[];
}

/** Distributed types that train with DDP, where join applies (Accelerate's `multi_device`, plus CPU). */
const DDP_TYPES: ReadonlySet<DistributedType> = new Set<DistributedType>([
  DistributedType.MULTI_CPU,
  DistributedType.MULTI_GPU,
  DistributedType.MULTI_NPU,
  DistributedType.MULTI_MLU,
  DistributedType.MULTI_SDAA,
  DistributedType.MULTI_MUSA,
  DistributedType.MULTI_XPU,
  DistributedType.MULTI_HPU,
  DistributedType.MULTI_NEURON,
]);

/** The sharding batch sampler of a prepared map-style loader, under any skip wrappers. */
function shardOf(loader: unknown): BatchSamplerShard | undefined {
  if (!(loader instanceof DataLoaderShard)) return undefined;
  let b: unknown = loader.batchSampler;
  while (b instanceof SkipBatchSampler) b = b.batchSampler;
  return b instanceof BatchSamplerShard ? b : undefined;
}

/**
 * Run `fn` so that ranks with fewer batches do not hang the others (see
 * `Accelerator.joinUnevenInputs`). Single process: runs `fn`. Distributed without
 * DDP (FSDP, DeepSpeed, …) or with a backend that cannot join: warns and runs `fn`.
 */
export async function joinUnevenInputs<R>(host: JoinHost, models: unknown, options: JoinUnevenInputsOptions, fn: () => R | Promise<R>): Promise<R> {
  if (typeof fn !== 'function') throw new TypeError('joinUnevenInputs: the last argument must be the function to run');
  await host.ready();
  const list = Array.isArray(models) ? models : [models];
  if (!host.useDistributed) return fn();
  const backend = host.backend;
  const strategy = host.strategy;
  if (!DDP_TYPES.has(host.distributedType) || !strategy.joinUnevenInputs) {
    process.emitWarning(
      `Joining uneven inputs is only supported for multi-device data parallel training (DDP), not ${host.distributedType} with the "${strategy.name}" strategy and the "${backend.name}" backend: joinUnevenInputs will have no effect.`,
      'AccelerateWarning',
    );
    return fn();
  }

  const restore: Array<[BatchSamplerShard, boolean]> = [];
  let evenBatches = host.evenBatches;
  if (options.evenBatches !== undefined) {
    evenBatches = options.evenBatches;
    let iterableSeen = false;
    for (const dl of host.dataloaders) {
      const shard = shardOf(dl);
      if (shard) {
        restore.push([shard, shard.evenBatches]);
        shard.evenBatches = evenBatches;
      } else if (dl instanceof DataLoaderDispatcher || dl instanceof DataLoaderShard) {
        iterableSeen = true;
      }
    }
    if (iterableSeen) {
      process.emitWarning(
        'Overriding evenBatches is only supported for map-style datasets, yet some prepared data loaders are iterable (or dispatch batches): their batches are unchanged.',
        'AccelerateWarning',
      );
    }
  }
  try {
    if (evenBatches) return await fn();
    return await strategy.joinUnevenInputs(list, fn, { divideByInitialWorldSize: options.divideByInitialWorldSize ?? true });
  } finally {
    for (const [shard, value] of restore) shard.evenBatches = value;
  }
}
