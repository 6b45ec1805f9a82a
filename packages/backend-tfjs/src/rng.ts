/**
 * Reproducible randomness for tfjs. tfjs keeps no global random state: every
 * random op (`tf.randomNormal`, `tf.randomUniform`, layer initialisers,
 * dropout) takes an optional `seed`, and without one draws its stream from
 * `Math.random`, which nothing can reseed. So this package owns one
 * generator (core's xoshiro128** `Generator`): {@link manualSeed} restarts it,
 * {@link nextSeed} draws seeds for tfjs ops from it, and its state can be
 * saved and restored. What is reproducible after `manualSeed(s)`:
 *
 * - parameters created through {@link TfjsModule}, {@link Linear} and the
 *   helpers here ({@link randomNormal}, {@link randomUniform}, {@link seededInitializer});
 * - layers built with `kernelInitializer: seededInitializer('glorotUniform')`
 *   (or any initialiser given `seed: nextSeed()`), and dropout given a seed;
 * - data order (core seeds its own generator in `setSeed`).
 *
 * Not reproducible: tfjs layers left with their default, unseeded
 * initialisers, and any tfjs random op called without a seed.
 * @module
 */
import { Generator, takeSeed, type GeneratorState } from '@accelerate/core';
import { tf } from './tf.js';

/** A tfjs layer initialiser (what `kernelInitializer` accepts). */
export type Initializer = ReturnType<typeof tf.initializers.glorotUniform>;

const generator = new Generator();
const BACKEND_NAME = 'tfjs';

/** Restart the generator from `seed` (an explicit seed: a pending `setSeed` no longer applies). */
export function manualSeed(seed: number): void {
  takeSeed(BACKEND_NAME);
  generator.manualSeed(seed);
}

/**
 * A seed for one tfjs random op, drawn from the generator (in [0, 2^31)).
 * A core `setSeed` made since the last draw restarts the generator first:
 * that is how `setSeed(0)` before this package was loaded (or before any
 * Accelerator exists) still decides the initial weights.
 */
export function nextSeed(): number {
  const pending = takeSeed(BACKEND_NAME);
  if (pending !== undefined) generator.manualSeed(pending);
  return generator.nextUint32() >>> 1;
}

/** The generator's state as bytes (UTF-8 JSON of core's `GeneratorState`). */
export function getRngState(): Uint8Array {
  const pending = takeSeed(BACKEND_NAME);
  if (pending !== undefined) generator.manualSeed(pending);
  return new TextEncoder().encode(JSON.stringify(generator.getState()));
}

/** Restore a state from {@link getRngState}. */
export function setRngState(state: Uint8Array): void {
  let parsed: GeneratorState;
  try {
    parsed = JSON.parse(new TextDecoder().decode(state)) as GeneratorState;
  } catch (cause) {
    throw new TypeError('tfjs setRngState: the bytes are not a state from getRngState() (not JSON).', { cause });
  }
  takeSeed(BACKEND_NAME);
  generator.setState(parsed);
}

/** `tf.randomNormal` seeded from the generator. */
export function randomNormal(shape: number[], mean = 0, stdDev = 1): tf.Tensor {
  return tf.randomNormal(shape, mean, stdDev, 'float32', nextSeed());
}

/** `tf.randomUniform` seeded from the generator. */
export function randomUniform(shape: number[], minval = 0, maxval = 1): tf.Tensor {
  return tf.randomUniform(shape, minval, maxval, 'float32', nextSeed());
}

/** Initialisers of `tf.initializers` that take a seed. */
export type SeededInitializerName =
  | 'glorotUniform'
  | 'glorotNormal'
  | 'heUniform'
  | 'heNormal'
  | 'leCunUniform'
  | 'leCunNormal'
  | 'randomUniform'
  | 'randomNormal'
  | 'truncatedNormal'
  | 'orthogonal';

/** A tfjs layer initialiser whose seed comes from the generator (for `kernelInitializer`). */
export function seededInitializer(name: SeededInitializerName, args: Record<string, unknown> = {}): Initializer {
  const make = tf.initializers[name] as unknown as (a: Record<string, unknown>) => Initializer;
  return make({ ...args, seed: nextSeed() });
}
