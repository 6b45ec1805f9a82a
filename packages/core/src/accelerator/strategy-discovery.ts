/**
 * Finding the plugin for a strategy the configuration names
 * (`distributed_type: FSDP`): the installed package whose package.json says
 * `"accelerate": { "plugin": { "entry": "./dist/index.js", "strategy": "FSDP" } }`
 * is imported on demand and its `acceleratePlugin()` export builds the plugin
 * from the configuration alone (its options come from the plugin's config
 * section), as Python Accelerate builds its FSDP plugin from `FSDP_*` variables.
 * Core names no plugin package: a third-party one is found exactly as ours are.
 * @module
 */
import type { Plugin } from '../interfaces/plugin.js';
import { loadPackageEntry, recordDiscoveryFailure, scanAcceleratePackages, type DiscoveredPackage, type ScanOptions } from '../registry/discovery.js';
import type { RequestedStrategy } from './strategy-selection.js';

/** What a plugin package's `accelerate.plugin.entry` module exports so that a configuration alone can enable it. */
export interface StrategyPluginModule {
  /** Build the plugin with no code-given options (they come from its config section). */
  acceleratePlugin(): Plugin;
}

/** The installed packages that declare a plugin for `strategy` (`accelerate.plugin.strategy`), nearest first. */
export function strategyPluginPackages(strategy: string, options: ScanOptions = {}): DiscoveredPackage[] {
  return scanAcceleratePackages(options).filter((p) => p.plugin?.strategy === strategy);
}

/**
 * The plugin of the installed package that provides `requested`, or why there
 * is none (no package declares it / its entry failed to load / it exports no
 * `acceleratePlugin`). Two packages declaring the same strategy: the nearest wins.
 */
export async function loadStrategyPlugin(requested: RequestedStrategy | string, options: ScanOptions = {}): Promise<{ plugin?: Plugin; package?: DiscoveredPackage; reason: string }> {
  const [pkg] = strategyPluginPackages(requested, options);
  if (!pkg) {
    return { reason: `no installed package declares "strategy": "${requested}" in the "accelerate.plugin" field of its package.json` };
  }
  let mod: Partial<StrategyPluginModule>;
  try {
    mod = await loadPackageEntry<Partial<StrategyPluginModule>>(pkg, 'plugin');
  } catch (e) {
    return { package: pkg, reason: (e as Error).message };
  }
  if (typeof mod.acceleratePlugin !== 'function') {
    const reason = `${pkg.name} ${pkg.version} does not export acceleratePlugin() from ${pkg.plugin!.entry}; update it to a version that matches @accelerate/core`;
    recordDiscoveryFailure(pkg.name, 'plugin', reason);
    return { package: pkg, reason };
  }
  return { plugin: mod.acceleratePlugin(), package: pkg, reason: '' };
}
