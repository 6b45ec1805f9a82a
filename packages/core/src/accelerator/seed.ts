/**
 * `setSeed`: one call that makes a run reproducible — core's data-order
 * generator and the compute backend's generators.
 * @module
 */
import type { Backend } from '../interfaces/backend.js';
import { manualSeed as seedDataGenerator } from '../data/random.js';
import { PartialState } from '../state/partial-state.js';

let pending: { seed: number; deviceSpecific: boolean } | undefined;

/** Options of {@link setSeed}. */
export interface SetSeedOptions {
  /** Add the process index to the seed so every process draws different numbers. */
  deviceSpecific?: boolean;
  /** Backends to seed besides the active one (e.g. before any Accelerator exists). */
  backends?: Backend<any, any, any, any>[];
}

/**
 * Seed core's data generator (shuffling), the active backend and any backends
 * passed in. A backend that becomes active later (an Accelerator created after
 * this call) is seeded when it is ready, so `setSeed(42)` may come first.
 */
export function setSeed(seed: number, options: SetSeedOptions = {}): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`setSeed: seed must be a whole number >= 0, got ${seed}.`);
  }
  const state = PartialState.current;
  const offset = options.deviceSpecific ? (state?.processIndex ?? 0) : 0;
  seedDataGenerator(seed + offset);
  for (const b of options.backends ?? []) b.manualSeed(seed + offset);
  if (state) {
    state.backend.manualSeed(seed + offset);
    pending = undefined;
  } else {
    pending = { seed, deviceSpecific: options.deviceSpecific ?? false };
  }
}

/** Seed a backend that just became active with a seed set before it existed. @internal */
export function applyPendingSeed(backend: Backend<any, any, any, any>, processIndex: number): void {
  if (!pending) return;
  const s = pending.seed + (pending.deviceSpecific ? processIndex : 0);
  seedDataGenerator(s);
  backend.manualSeed(s);
  pending = undefined;
}
