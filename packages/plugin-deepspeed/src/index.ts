/**
 * `@accelerate/plugin-deepspeed`: DeepSpeed ZeRO for accelerate-ts.
 *
 * This release resolves and validates the DeepSpeed configuration exactly as
 * Python Accelerate 1.15 does ({@link resolveDeepSpeedConfig}, {@link fillAuto});
 * training needs the DeepSpeed engine bridge, not built yet.
 *
 * Turn it on with `new Accelerator({ plugins: [deepspeed({...})] })`, with
 * `accelerate launch --use_deepspeed --zero_stage 2 …`, or with
 * `distributed_type: DEEPSPEED` and a `deepspeed_config:` section in
 * `default_config.yaml`.
 * @module
 */
export { deepspeed, acceleratePlugin, DeepSpeedBridgeMissingError, resolveInputFromContext } from './plugin.js';
export {
  resolveDeepSpeedConfig,
  fillAuto,
  validateDeepSpeedLaunchConfig,
  toDeepSpeedJson,
  getConfigValue,
  isAuto,
  DeepSpeedConfigError,
  SHADOWED_BY_CONFIG_FILE,
  type DeepSpeedConfig,
  type DeepSpeedOptions,
  type DeepSpeedPlan,
  type DeepSpeedSection,
  type DeepSpeedLaunchInput,
  type FilledDeepSpeedConfig,
  type OffloadDevice,
  type PrepareFacts,
  type ResolveDeepSpeedConfigInput,
  type ZeroStage,
} from './config.js';
