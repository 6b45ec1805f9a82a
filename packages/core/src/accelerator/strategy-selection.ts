/**
 * Choosing the one distribution strategy of an Accelerator: the strategy a
 * plugin provides, else the one the configuration asks for by
 * `distributed_type` (found among installed packages), else DDP on several
 * processes and `single-process` on one. Asking for a strategy that is not
 * installed is an error naming the package — never a silent fallback to DDP.
 * @module
 */
import type { ResolvedValues } from '../config/resolve.js';
import type { Plugin } from '../interfaces/plugin.js';
import { STRATEGY_INSTALL_HINTS } from '../interfaces/strategy.js';

/** A strategy family the configuration can ask for. */
export type RequestedStrategy = keyof typeof STRATEGY_INSTALL_HINTS;

/**
 * The strategy the resolved configuration asks for (`distributed_type: FSDP`,
 * `--use_fsdp`, `ACCELERATE_USE_FSDP=true`, and the DeepSpeed / Megatron-LM
 * equivalents), or undefined for plain data parallelism.
 */
export function requestedStrategy(values: Readonly<ResolvedValues>): RequestedStrategy | undefined {
  const asked: RequestedStrategy[] = [];
  if (values.useDeepspeed || values.distributedType === 'DEEPSPEED') asked.push('DEEPSPEED');
  if (values.useFsdp || values.distributedType === 'FSDP') asked.push('FSDP');
  if (values.useMegatronLm || values.distributedType === 'MEGATRON_LM') asked.push('MEGATRON_LM');
  if (asked.length > 1) {
    throw new Error(
      `The configuration asks for ${asked.join(' and ')} at once (distributed_type / --use_deepspeed / --use_fsdp / --use_megatron_lm and their ACCELERATE_USE_* variables). ` +
        'Choose one distribution strategy.',
    );
  }
  return asked[0];
}

/** The plugins (after `apply`) that provide a strategy; more than one is an error naming both. */
export function strategyProvider(plugins: readonly Plugin[]): Plugin | undefined {
  const providers = plugins.filter((p) => p.strategy !== undefined);
  if (providers.length > 1) {
    throw new Error(
      `Plugins ${providers.map((p) => `"${p.name}"`).join(' and ')} both provide a distribution strategy, and an Accelerator runs exactly one. ` +
        'Remove all but one of them (DDP is the built-in default and needs no plugin).',
    );
  }
  return providers[0];
}

/** The error for a requested strategy whose package is not installed. */
export function missingStrategyPackage(requested: RequestedStrategy, why: string): Error {
  const pkg = STRATEGY_INSTALL_HINTS[requested];
  return new Error(
    `The configuration asks for ${requested} (distributed_type: ${requested}), which @accelerate/core does not provide: ${why}. ` +
      `Install it (npm install ${pkg}) and it is used automatically, or pass its plugin to new Accelerator({ plugins: [...] }); ` +
      'or remove the setting to train with DDP. accelerate-ts does not fall back to DDP silently.',
  );
}
