/**
 * `@accelerate/plugin-fsdp`: fully sharded data parallel as an accelerate-ts
 * strategy plugin. Parameters, gradients and optimizer state are sharded
 * across processes; each wrapped unit's parameters are gathered just before
 * its forward and backward and released after, gradients are reduce-scattered
 * as backward produces them, and the optimizer steps on this rank's shards.
 *
 * Turn it on with `new Accelerator({ plugins: [fsdp({...})] })`, with
 * `accelerate launch --use_fsdp --fsdp_sharding_strategy FULL_SHARD …`, or
 * with `distributed_type: FSDP` and an `fsdp_config:` section in
 * `default_config.yaml`.
 * @module
 */
export { fsdp, acceleratePlugin } from './plugin.js';
export { createFsdpStrategy, type FsdpStrategy, type FsdpModel } from './strategy.js';
export {
  resolveFsdpPlan,
  validateFsdpLaunchConfig,
  FsdpConfigError,
  type FsdpOptions,
  type FsdpPlan,
  type ShardingStrategy,
  type BackwardPrefetch,
  type StateDictType,
  type ResolveFsdpPlanInput,
  type FsdpLaunchInput,
  type WrapPolicyFunction,
  type WrapPolicyInfo,
  type MixedPrecisionPolicyDict,
  type AutoWrapPlan,
  type MixedPrecisionPlan,
  type FsdpSection,
} from './options.js';
export { planUnits, type WrapUnit, type UnitPlan, type PlanUnitsOptions } from './wrap-policy.js';
export { FlatUnit, type ParamSlot, type UnitComm, type UnitDtypes } from './flat-param.js';
export { fullModelFile } from './checkpoint.js';
