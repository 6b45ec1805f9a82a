/**
 * A seedable generator for test fixtures and the reference backend: core's
 * data {@link Generator} (xoshiro128**) plus the float helpers fixtures need,
 * with a state that saves to bytes like a backend's RNG state.
 * @module
 */
import { Generator } from '../data/random.js';

/** Bytes of {@link SeededRandom.getState}: four 32-bit words. */
const STATE_BYTES = 16;

/** Seedable random numbers; the same seed always gives the same stream. */
export class SeededRandom {
  private readonly g: Generator;

  /** @param seed any safe integer. */
  constructor(seed = 0) {
    this.g = new Generator(seed);
  }

  /** Restart the stream from `seed` (a safe integer). */
  seed(seed: number): void {
    this.g.manualSeed(seed);
  }

  /** Next 32-bit unsigned integer. */
  nextUint32(): number {
    return this.g.nextUint32();
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  random(): number {
    return this.g.nextFloat();
  }

  /** Uniform float in [low, high). */
  uniform(low = 0, high = 1): number {
    return low + (high - low) * this.random();
  }

  /** Standard normal sample (Box–Muller; one sample per call so the state stays 16 bytes). */
  normal(mean = 0, std = 1): number {
    let u = this.random();
    while (u === 0) u = this.random();
    const v = this.random();
    return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** A copy of the generator state (16 bytes). */
  getState(): Uint8Array {
    return new Uint8Array(Uint32Array.from(this.g.getState().words).buffer);
  }

  /** Restore a state returned by {@link SeededRandom.getState}. */
  setState(state: Uint8Array): void {
    if (!(state instanceof Uint8Array) || state.byteLength !== STATE_BYTES) {
      throw new TypeError(
        `SeededRandom.setState: expected a Uint8Array of ${STATE_BYTES} bytes (from getState()), got ${state instanceof Uint8Array ? `${state.byteLength} bytes` : typeof state}.`,
      );
    }
    const w = new Uint32Array(state.slice().buffer);
    if ((w[0] | w[1] | w[2] | w[3]) === 0) {
      throw new RangeError('SeededRandom.setState: the all-zero state is invalid for xoshiro128**; pass a state from getState().');
    }
    this.g.setState({ algorithm: 'xoshiro128**', seed: this.g.initialSeed, words: [w[0], w[1], w[2], w[3]] });
  }
}
