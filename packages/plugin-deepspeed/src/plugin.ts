/**
 * The plugin users add (`deepspeed({...})`), and the one a configuration alone
 * turns on (`distributed_type: DEEPSPEED`, `--use_deepspeed`,
 * `ACCELERATE_USE_DEEPSPEED=true`) through this package's `accelerate.plugin` field.
 * @module
 */
import type { DistributionStrategy, Plugin, PluginContext } from '@accelerate/core';
import { resolveDeepSpeedConfig, type DeepSpeedOptions, type DeepSpeedPlan, type ResolveDeepSpeedConfigInput } from './config.js';

/** Training with DeepSpeed needs the bridge, which is not built yet. */
export class DeepSpeedBridgeMissingError extends Error {
  constructor(readonly plan: DeepSpeedPlan) {
    super(
      `DeepSpeed: the configuration is valid (ZeRO stage ${plan.zeroStage}), but @accelerate/plugin-deepspeed cannot train yet: ` +
        'the bridge that runs the DeepSpeed engine in a Python worker is not part of this version yet. ' +
        'Use resolveDeepSpeedConfig()/fillAuto() to produce the config, or train with FSDP (npm install @accelerate/plugin-fsdp; --use_fsdp) meanwhile.',
    );
    this.name = 'DeepSpeedBridgeMissingError';
  }
}

/** What `resolveDeepSpeedConfig` needs from a plugin context. */
export function resolveInputFromContext(ctx: PluginContext, user: DeepSpeedOptions, env: NodeJS.ProcessEnv = process.env): ResolveDeepSpeedConfigInput {
  return {
    user,
    section: ctx.resolvedConfig.section('deepspeed'),
    mixedPrecision: ctx.state.mixedPrecision,
    configDsFields: env.ACCELERATE_CONFIG_DS_FIELDS ?? '',
    fp8Backend: env.ACCELERATE_FP8_BACKEND,
    fp8OptLevel: env.ACCELERATE_FP8_OPT_LEVEL,
    numProcesses: ctx.numProcesses,
  };
}

/**
 * DeepSpeed ZeRO. Options given here win over the `deepspeed_config` section
 * of the config file, the `ACCELERATE_DEEPSPEED_*` variables and the launch
 * flags, which fill in everything not given (as Python's `DeepSpeedPlugin`
 * reads the environment for unset fields).
 *
 * For now the strategy resolves and validates the whole configuration (errors
 * name the field as the user wrote it), then refuses to train with
 * {@link DeepSpeedBridgeMissingError}.
 *
 * ```ts
 * const accelerator = new Accelerator({ plugins: [deepspeed({ zeroStage: 3, hfDsConfig: 'ds_config.json' })] });
 * ```
 */
export function deepspeed(options: DeepSpeedOptions = {}): Plugin {
  return {
    name: 'deepspeed',
    section: 'deepspeed',
    strategy: (ctx: PluginContext): DistributionStrategy => {
      const plan = resolveDeepSpeedConfig(resolveInputFromContext(ctx, options));
      for (const w of plan.warnings) ctx.logger.warning(`DeepSpeed: ${w}`);
      throw new DeepSpeedBridgeMissingError(plan);
    },
  };
}

/** The plugin built from the configuration alone (what core loads for `distributed_type: DEEPSPEED`). */
export function acceleratePlugin(): Plugin {
  return deepspeed();
}
