/**
 * The two strategies core brings: `single-process` (nothing to distribute)
 * and `DDP` (every rank holds the whole model; gradients are all-reduced in
 * buckets during backward by the backend's native data-parallel engine, as
 * torch's `DistributedDataParallel` does with c10d's reducer).
 * @module
 */
import { requireCapability, type DataParallelCapability, type DistributedDataParallelOptions } from '../interfaces/backend.js';
import type { DistributionStrategy, StrategyContext } from '../interfaces/strategy.js';

/** One process: models are used as they are. */
export function singleProcessStrategy(): DistributionStrategy {
  return {
    name: 'single-process',
    wrapModel: (model) => model,
  };
}

/**
 * Distributed data parallel over the world's process group, delegating to
 * the backend's `dataParallel` capability. `options` are
 * `DistributedDataParallelKwargs`' fields (bucket size, unused-parameter
 * detection, static graph, comm hook, …), passed to the backend as they are.
 */
export function ddpStrategy(options: Readonly<Partial<DistributedDataParallelOptions>> = {}): DistributionStrategy {
  let engine: DataParallelCapability<any, any> | undefined;
  const dp = () => {
    if (!engine) throw new Error('The DDP strategy was used before setup(); this is a bug in accelerate-ts.');
    return engine;
  };
  return {
    name: 'DDP',
    requires: ['dataParallel', 'communication'],
    setup(ctx: StrategyContext) {
      engine = requireCapability(ctx.backend, 'dataParallel', 'Data-parallel training on several processes (the DDP strategy)');
    },
    async wrapModel(model, ctx) {
      if (!ctx.group) throw new Error('The DDP strategy needs a process group; it runs only on several processes.');
      return dp().wrap(model, ctx.group, { ...options });
    },
    unwrapModel: (model) => dp().unwrap(model),
    setGradientSync: (model, enabled) => dp().setGradientSync(model, enabled),
    triggerSyncInBackward(model) {
      const e = dp();
      if (!e.triggerSyncInBackward) throw new Error('The backend\'s data-parallel engine cannot force a gradient sync in backward (dataParallel.triggerSyncInBackward).');
      e.triggerSyncInBackward(model);
    },
    joinUnevenInputs<R>(models: unknown[], fn: () => R | Promise<R>, opts: { divideByInitialWorldSize: boolean }): Promise<R> {
      const e = dp();
      if (!e.joinUnevenInputs) {
        process.emitWarning(
          'The backend\'s data-parallel engine cannot join uneven inputs (dataParallel.joinUnevenInputs): joinUnevenInputs will have no effect.',
          'AccelerateWarning',
        );
        return Promise.resolve(fn());
      }
      return e.joinUnevenInputs(models, fn, opts);
    },
  };
}
