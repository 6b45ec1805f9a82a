/**
 * `setSeed`: one call that makes a run reproducible — core's data-order
 * generator and the compute backend's generators.
 * @module
 */
import type { Backend } from '../interfaces/backend.js';
import { manualSeed as seedDataGenerator } from '../data/random.js';
import { detectWorld } from '../state/environment.js';
import { PartialState } from '../state/partial-state.js';

let pending: { seed: number; deviceSpecific: boolean; hooked: ReadonlySet<string> } | undefined;
let last: { seed: number; deviceSpecific: boolean } | undefined;
const seedHooks = new Map<string, (seed: number) => void>();

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
 * Let a backend package seed its global generators whenever {@link setSeed} is
 * called, also before any Accelerator exists, as Python's `set_seed` seeds torch
 * at once. Backend packages call this when they are imported, under their
 * backend's `name`; a seed set before registration is applied right away.
 * Returns a function that removes the hook.
 */
export function registerSeedHook(backendName: string, seedFn: (seed: number) => void): () => void {
  seedHooks.set(backendName, seedFn);
  if (last) seedFn(last.seed + (last.deviceSpecific ? processIndexNow() : 0));
  return () => {
    if (seedHooks.get(backendName) === seedFn) seedHooks.delete(backendName);
  };
}

/**
 * Seed core's data generator (shuffling), every imported backend package's
 * generators (so `setSeed(42)` then `new nn.Linear(...)` draws the same weights
 * every run), the active backend and any backends passed in. A backend that
 * becomes active later and was not seeded already is seeded when it is ready.
 */
export function setSeed(seed: number, options: SetSeedOptions = {}): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`setSeed: seed must be a whole number >= 0, got ${seed}.`);
  }
  const state = PartialState.current;
  const deviceSpecific = options.deviceSpecific ?? false;
  const offset = deviceSpecific ? processIndexNow() : 0;
  seedDataGenerator(seed + offset);
  for (const b of options.backends ?? []) b.rng?.manualSeed(seed + offset);
  for (const fn of seedHooks.values()) fn(seed + offset);
  last = { seed, deviceSpecific };
  if (state) {
    if (!seedHooks.has(state.backend.name)) state.backend.rng?.manualSeed(seed + offset);
    pending = undefined;
  } else {
    pending = { seed, deviceSpecific, hooked: new Set(seedHooks.keys()) };
  }
}

/** Seed a backend that just became active with a seed set before it existed. @internal */
export function applyPendingSeed(backend: Backend<any, any, any, any>, processIndex: number): void {
  if (!pending) return;
  const p = pending;
  pending = undefined;
  // Already seeded through its hook: seeding again would restart the stream the model's
  // initial weights came from (Python seeds once).
  if (p.hooked.has(backend.name)) return;
  const s = p.seed + (p.deviceSpecific ? processIndex : 0);
  seedDataGenerator(s);
  backend.rng?.manualSeed(s);
}
