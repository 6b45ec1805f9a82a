/**
 * Finding installed backends without a global side effect at import time:
 * every package whose package.json has an `accelerate.backend` field (see
 * {@link scanAcceleratePackages} for the field) is registered under its name
 * and priority with a factory that imports its entry only when that backend
 * is resolved. A package whose entry fails to load is then one line of the
 * aggregated "no available backend: [libtorch] …, [tfjs] …" error, and of
 * {@link discoveryFailures}.
 * @module
 */
import type { Backend, BackendFactory } from '../interfaces/backend.js';
import { defaultBackendRegistry, type BackendRegistry } from '../registry/backend-registry.js';
import { loadPackageEntry, recordDiscoveryFailure, scanAcceleratePackages, type DiscoveredPackage, type ScanOptions } from '../registry/discovery.js';

/**
 * What a backend package's `accelerate.backend.entry` module exports as
 * `accelerateBackend`: its factory (and, optionally, the same name and
 * priority as its package.json field says). Importing the entry should be
 * cheap and have no side effect: load the heavy parts in `factory.init()`.
 *
 * @example
 * // dist/backend-entry.js
 * export const accelerateBackend = {
 *   name: 'acme',
 *   priority: 20,
 *   factory: { init: async () => (await import('./backend.js')).createAcmeBackend() },
 * };
 */
export interface BackendModuleEntry {
  name?: string;
  priority?: number;
  factory: BackendFactory;
}

/** One backend found by {@link discoverBackends}. */
export interface DiscoveredBackend {
  /** The backend's name (`accelerate.backend.name`). */
  name: string;
  priority: number;
  /** The package that provides it. */
  package: DiscoveredPackage;
  /** Whether discovery registered it (false: that name was already registered explicitly). */
  registered: boolean;
}

/** Options of {@link discoverBackends}. */
export interface DiscoverBackendsOptions extends ScanOptions {
  /** Registry to fill. Default: the process-wide one `registerBackend` fills. */
  registry?: BackendRegistry;
}

const registeredBy = new WeakMap<BackendRegistry, Set<string>>();

/** A factory that imports the package's entry when the backend is first resolved. */
function lazyFactory(pkg: DiscoveredPackage): BackendFactory {
  const b = pkg.backend!;
  return {
    async init(): Promise<Backend<any, any, any, any>> {
      const mod = await loadPackageEntry<{ accelerateBackend?: Partial<BackendModuleEntry> }>(pkg, 'backend');
      const entry = mod.accelerateBackend;
      let problem: string | undefined;
      if (!entry || typeof entry.factory?.init !== 'function') {
        problem = `${pkg.name}'s backend entry ${b.entry} does not export \`accelerateBackend\` with a factory ({ factory: { init() } })`;
      } else if (entry.name !== undefined && entry.name !== b.name) {
        problem = `${pkg.name}'s backend entry calls the backend "${entry.name}" but its package.json "accelerate.backend.name" says "${b.name}"; make them agree`;
      }
      if (problem) {
        recordDiscoveryFailure(pkg.name, 'backend', problem);
        throw new Error(problem);
      }
      return entry!.factory!.init();
    },
  };
}

/**
 * Register every installed backend package (by its `accelerate.backend`
 * field) in the registry, without importing anything: each is imported when
 * it is resolved. A name that is already registered (by `registerBackend`)
 * keeps its explicit registration. Cheap to call again (the scan is memoised).
 */
export function discoverBackends(options: DiscoverBackendsOptions = {}): DiscoveredBackend[] {
  const registry = options.registry ?? defaultBackendRegistry;
  let mine = registeredBy.get(registry);
  if (!mine) registeredBy.set(registry, (mine = new Set()));
  const out: DiscoveredBackend[] = [];
  for (const pkg of scanAcceleratePackages(options)) {
    const b = pkg.backend;
    if (!b) continue;
    const key = `${b.name}\0${pkg.dir}`;
    let registered = mine.has(key);
    if (!registered && !registry.names().includes(b.name)) {
      registry.register(b.name, lazyFactory(pkg), b.priority);
      mine.add(key);
      registered = true;
    }
    out.push({ name: b.name, priority: b.priority, package: pkg, registered });
  }
  return out;
}

/**
 * {@link discoverBackends} on the default registry, as a promise (what the
 * Accelerator awaits before resolving a backend).
 */
export async function discoverInstalledBackends(options: ScanOptions = {}): Promise<void> {
  discoverBackends(options);
}
