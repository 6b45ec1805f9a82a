/**
 * The plugin users add (`fsdp({...})`), and the one a configuration alone
 * turns on (`distributed_type: FSDP`, `--use_fsdp`, `ACCELERATE_USE_FSDP`)
 * through this package's `accelerate.plugin` field.
 * @module
 */
import type { Plugin, PluginContext } from '@accelerate/core';
import { resolveFsdpPlan, type FsdpOptions } from './options.js';
import { createFsdpStrategy } from './strategy.js';

/**
 * Fully sharded data parallel. Options given here win over the `fsdp_config`
 * section of the config file, the `FSDP_*` variables and the `--fsdp_*`
 * launch flags, which fill in everything not given (as Python Accelerate's
 * `FullyShardedDataParallelPlugin` reads the environment for unset fields).
 *
 * ```ts
 * const accelerator = new Accelerator({
 *   plugins: [fsdp({ shardingStrategy: 'FULL_SHARD', autoWrapPolicy: { transformerLayerClasses: ['TransformerEncoderLayer'] } })],
 * });
 * ```
 */
export function fsdp(options: FsdpOptions = {}): Plugin {
  return {
    name: 'fsdp',
    section: 'fsdp',
    strategy: (ctx: PluginContext) => createFsdpStrategy(resolveFsdpPlan(planInput(ctx, options))),
  };
}

/** What `resolveFsdpPlan` needs from a plugin context. */
function planInput(ctx: PluginContext, user: FsdpOptions): Parameters<typeof resolveFsdpPlan>[0] {
  const local = Number(process.env.LOCAL_WORLD_SIZE);
  const dpShard = Number(process.env.PARALLELISM_CONFIG_DP_SHARD_SIZE);
  return {
    section: ctx.resolvedConfig.section('fsdp'),
    user,
    numProcesses: ctx.numProcesses,
    localWorldSize: Number.isInteger(local) && local > 0 ? local : undefined,
    dpShardSize: Number.isInteger(dpShard) && dpShard > 0 ? dpShard : undefined,
    mixedPrecision: ctx.state.mixedPrecision,
  };
}

/** The plugin built from the configuration alone (what core loads for `distributed_type: FSDP`). */
export function acceleratePlugin(): Plugin {
  return fsdp();
}
