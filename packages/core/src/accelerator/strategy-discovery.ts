/**
 * Finding the plugin for a strategy the configuration names
 * (`distributed_type: FSDP` → `@accelerate/plugin-fsdp`): the package is
 * imported on demand and its `acceleratePlugin()` export builds the plugin
 * from the configuration alone (its options come from the plugin's config
 * section), as Python Accelerate builds its FSDP plugin from `FSDP_*` variables.
 * @module
 */
import type { Plugin } from '../interfaces/plugin.js';
import { STRATEGY_PACKAGES } from '../interfaces/strategy.js';
import type { RequestedStrategy } from './strategy-selection.js';

/** What a strategy package exports so that a configuration alone can enable it. */
export interface StrategyPluginModule {
  /** Build the plugin with no code-given options (they come from its config section). */
  acceleratePlugin(): Plugin;
}

/** How packages are imported (replaceable in tests). */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

/**
 * The plugin of the package that provides `requested`, or why there is none
 * (not installed / failed to load / exports no `acceleratePlugin`).
 */
export async function loadStrategyPlugin(
  requested: RequestedStrategy,
  importer: ModuleImporter = (s) => import(s),
): Promise<{ plugin?: Plugin; reason: string }> {
  const pkg = STRATEGY_PACKAGES[requested];
  let mod: Partial<StrategyPluginModule>;
  try {
    mod = (await importer(pkg)) as Partial<StrategyPluginModule>;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const notInstalled = (err?.code === 'ERR_MODULE_NOT_FOUND' || err?.code === 'MODULE_NOT_FOUND') && String(err.message).includes(pkg);
    return { reason: notInstalled ? `${pkg} is not installed` : `${pkg} is installed but failed to load (${err?.message ?? String(e)})` };
  }
  if (typeof mod.acceleratePlugin !== 'function') {
    return { reason: `${pkg} does not export acceleratePlugin(); update it to a version that matches @accelerate/core` };
  }
  return { plugin: mod.acceleratePlugin(), reason: '' };
}
