/**
 * `setSeed`: one call that makes a run reproducible — core's data-order
 * generator and the compute backend's generators.
 * @module
 */
import { createRequire } from 'node:module';
import type { Backend } from '../interfaces/backend.js';
import { seedDataGenerator } from '../data/random.js';
import { detectWorld } from '../state/environment.js';
import { PartialState } from '../state/partial-state.js';
import { defaultBackendRegistry } from '../registry/backend-registry.js';
import { recordDiscoveryFailure, scanAcceleratePackages, type DiscoveredPackage } from '../registry/discovery.js';

const requireCjs = createRequire(import.meta.url);

let request: { seed: number; deviceSpecific: boolean; generation: number } | undefined;
/** Whether the next Accelerator to become ready should apply {@link request} to its backend. */
let pendingForActive = false;
/** Backend name → generation of the last request it was given (seeding twice would restart its stream). */
const seededAt = new Map<string, number>();
const seedHooks = new Map<string, (seed: number) => void>();
const seedModules = new Map<string, SeedModule | null>();

/** What a backend package's `accelerate.backend.seed` CommonJS module exports. */
export interface SeedModule {
  /** Seed the package's process-wide generators if the package is in use here; whether it did. */
  seedIfLoaded(seed: number): boolean;
}

/** Options of {@link setSeed}. */
export interface SetSeedOptions {
  /** Add the process index to the seed so every process draws different numbers. */
  deviceSpecific?: boolean;
  /** Backends to seed besides the active one (e.g. before any Accelerator exists). */
  backends?: Backend<any, any, any, any>[];
}

/** This process's index: from the active state, else from the launcher's variables. */
function processIndexNow(): number {
  const state = PartialState.current;
  if (state) return state.processIndex;
  try {
    return detectWorld().rank;
  } catch {
    return 0;
  }
}

/**
 * Let code seed a backend's global generators whenever {@link setSeed} is
 * called. Nothing calls this at import: backend packages are seeded through
 * the `seed` module their package.json declares (see {@link setSeed}); this is
 * the explicit route for a backend that is neither discovered nor registered.
 * A seed set before registration is applied right away. Returns a function
 * that removes the hook.
 */
export function registerSeedHook(backendName: string, seedFn: (seed: number) => void): () => void {
  seedHooks.set(backendName, seedFn);
  if (request) {
    seedFn(request.seed + (request.deviceSpecific ? processIndexNow() : 0));
    seededAt.set(backendName, request.generation);
  }
  return () => {
    if (seedHooks.get(backendName) === seedFn) seedHooks.delete(backendName);
  };
}

/** The seed modules of installed backend packages, loaded synchronously (CommonJS) once each. */
function seedDiscoveredPackages(seed: number, mark: (name: string) => void): void {
  let packages: readonly DiscoveredPackage[];
  try {
    packages = scanAcceleratePackages();
  } catch {
    return;
  }
  for (const pkg of packages) {
    const b = pkg.backend;
    if (!b?.seed) continue;
    let mod = seedModules.get(b.seed);
    if (mod === undefined) {
      try {
        const m = requireCjs(b.seed) as Partial<SeedModule>;
        if (typeof m.seedIfLoaded !== 'function') throw new Error('it does not export seedIfLoaded(seed): boolean');
        mod = m as SeedModule;
      } catch (e) {
        recordDiscoveryFailure(pkg.name, 'seed', `${pkg.name}'s seed module ${b.seed} cannot be used (${(e as Error).message?.split('\n')[0]}); setSeed does not seed "${b.name}" until its backend is active`, e);
        mod = null;
      }
      seedModules.set(b.seed, mod);
    }
    if (!mod) continue;
    try {
      if (mod.seedIfLoaded(seed)) mark(b.name);
    } catch (e) {
      recordDiscoveryFailure(pkg.name, 'seed', `${pkg.name}'s seed module threw: ${(e as Error).message}`, e);
    }
  }
}

/**
 * Seed core's data generator (shuffling) and every backend in use — also
 * before any Accelerator exists, as Python's `set_seed` seeds torch at once, so
 * `setSeed(0); new nn.Linear(4, 3)` draws torch.manual_seed(0)'s weights.
 *
 * Importing a backend package registers nothing, so core finds the backends
 * to seed itself, synchronously:
 * - the `seed` module (CommonJS, loaded with `require`) of every installed
 *   package whose package.json declares `accelerate.backend.seed`; it seeds
 *   the package's process-wide generators only if the package is loaded in
 *   this process (libtorch: if its addon is loaded), and never loads it;
 * - every backend the backend registry has initialised, the active
 *   Accelerator's backend, `options.backends`, and hooks given to
 *   {@link registerSeedHook}.
 * The seed is recorded too: the backend of the next Accelerator to become
 * ready is seeded with it then, unless it was seeded above already (seeding
 * again would restart the stream the model's initial weights came from).
 */
export function setSeed(seed: number, options: SetSeedOptions = {}): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`setSeed: seed must be a whole number >= 0, got ${seed}.`);
  }
  const state = PartialState.current;
  const deviceSpecific = options.deviceSpecific ?? false;
  const offset = deviceSpecific ? processIndexNow() : 0;
  const s = seed + offset;
  const generation = (request?.generation ?? 0) + 1;
  request = { seed, deviceSpecific, generation };
  const mark = (name: string) => seededAt.set(name, generation);
  const fresh = (name: string) => seededAt.get(name) !== generation;
  seedDataGenerator(s);
  for (const b of options.backends ?? []) {
    b.rng?.manualSeed(s);
    mark(b.name);
  }
  for (const [name, fn] of seedHooks) {
    fn(s);
    mark(name);
  }
  seedDiscoveredPackages(s, mark);
  for (const b of defaultBackendRegistry.initialized()) {
    if (fresh(b.name) && b.rng) {
      b.rng.manualSeed(s);
      mark(b.name);
    }
  }
  if (state) {
    if (fresh(state.backend.name)) {
      state.backend.rng?.manualSeed(s);
      mark(state.backend.name);
    }
    pendingForActive = false;
  } else {
    pendingForActive = true;
  }
}

/**
 * For backends whose generators are JavaScript state (tfjs): the seed of the
 * latest {@link setSeed} that has not reached `backendName` yet — marking it
 * as reached — else undefined. The backend calls it before every draw and in
 * its own `manualSeed` / `setState`, so a seed set before the backend was
 * loaded applies at its first use, without registering anything at import,
 * and an explicit reseed afterwards is not overridden.
 */
export function takeSeed(backendName: string): number | undefined {
  if (!request || seededAt.get(backendName) === request.generation) return undefined;
  seededAt.set(backendName, request.generation);
  return request.seed + (request.deviceSpecific ? processIndexNow() : 0);
}

/** Seed a backend that just became active with a seed set before it existed. @internal */
export function applyPendingSeed(backend: Backend<any, any, any, any>, processIndex: number): void {
  if (!pendingForActive || !request) return;
  pendingForActive = false;
  // Already seeded (its seed module, the registry, a hook): seeding again would restart
  // the stream the model's initial weights came from (Python seeds once).
  if (seededAt.get(backend.name) === request.generation) return;
  const s = request.seed + (request.deviceSpecific ? processIndex : 0);
  seedDataGenerator(s);
  backend.rng?.manualSeed(s);
  seededAt.set(backend.name, request.generation);
}
