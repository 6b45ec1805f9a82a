/**
 * Finding installed backends without a global side effect at import time:
 * the Accelerator (or the CLI) imports known backend packages on demand and
 * registers what they export.
 * @module
 */
import type { BackendFactory } from '../interfaces/backend.js';
import { registerBackend } from '../registry/backend-registry.js';

/**
 * What a backend package exports as `accelerateBackend` so it can be
 * discovered: a name, a priority (higher wins) and a factory.
 */
export interface BackendModuleEntry {
  name: string;
  priority: number;
  factory: BackendFactory;
}

/** Backend packages tried by {@link discoverInstalledBackends}, best first. */
export const KNOWN_BACKEND_PACKAGES: readonly string[] = ['@accelerate/backend-libtorch', '@accelerate/backend-tfjs'];

/** Why each known package could not be discovered (for `accelerate env` and error messages). */
export const discoveryFailures = new Map<string, string>();

let discovered: Promise<void> | undefined;

/**
 * Import each known backend package that is installed and register its
 * `accelerateBackend` export. Runs once; a package that is not installed is
 * skipped, one that fails to load is remembered with its reason.
 */
export function discoverInstalledBackends(packages: readonly string[] = KNOWN_BACKEND_PACKAGES): Promise<void> {
  discovered ??= (async () => {
    for (const pkg of packages) {
      try {
        const mod = (await import(pkg)) as { accelerateBackend?: BackendModuleEntry };
        const entry = mod.accelerateBackend;
        if (!entry) {
          discoveryFailures.set(pkg, 'package does not export `accelerateBackend`');
          continue;
        }
        registerBackend(entry.name, entry.factory, entry.priority);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        const notInstalled = err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes(pkg);
        discoveryFailures.set(pkg, notInstalled ? 'not installed' : `installed but failed to load: ${err?.message ?? String(e)}`);
      }
    }
  })();
  return discovered;
}
