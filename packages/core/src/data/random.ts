/**
 * Deterministic, seedable random numbers for the data pipeline: shuffling
 * samplers, seeds drawn for unseeded samplers, and the per-epoch
 * permutations that make a data order a pure function of
 * `(seed, epoch, position)`.
 *
 * The generator is xoshiro128** over 32-bit integer math only, so the same
 * seed gives the same stream on every platform and in every process. Its
 * state is a small plain object that survives `JSON.stringify`, which is what
 * checkpoints store.
 * @module
 */

/** PyTorch's default CPU seed; used until {@link seedDataGenerator} is called, so unseeded runs are reproducible as in PyTorch. */
export const DEFAULT_SEED = 67280421310721;

const TWO_32 = 0x1_0000_0000;

/** A {@link Generator}'s full state, JSON-serialisable. */
export interface GeneratorState {
  /** Algorithm tag, checked on restore. */
  algorithm: 'xoshiro128**';
  /** The seed the stream was started from (`initialSeed`). */
  seed: number;
  /** The four 32-bit state words (unsigned). */
  words: [number, number, number, number];
}

function checkSeed(where: string, seed: number): void {
  if (!Number.isSafeInteger(seed)) {
    throw new TypeError(`${where}: seed must be a safe integer, got ${String(seed)}. Pass an integer such as 42.`);
  }
}

/** One splitmix32 step: returns [next counter, mixed output]. */
function splitmix32(counter: number): [number, number] {
  const next = (counter + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  z ^= z >>> 15;
  return [next, z >>> 0];
}

/** Low and high 32-bit halves of a safe integer, two's complement for negatives. */
function halves(x: number): [number, number] {
  return [x >>> 0, Math.floor(x / TWO_32) >>> 0];
}

/**
 * Derive a seed for stream `stream` (e.g. an epoch) from a base seed. Distinct
 * `(seed, stream)` pairs give unrelated streams, unlike `seed + epoch`
 * (where seed 42 epoch 1 would equal seed 43 epoch 0).
 * The result is a non-negative safe integer (53 bits).
 */
export function deriveSeed(seed: number, stream: number): number {
  checkSeed('deriveSeed', seed);
  checkSeed('deriveSeed', stream);
  const [slo, shi] = halves(seed);
  const [elo, ehi] = halves(stream);
  let c = slo ^ Math.imul(shi, 0x2c1b3c6d);
  let a: number;
  let b: number;
  [c, a] = splitmix32(c ^ Math.imul(elo, 0x297a2d39));
  [c, b] = splitmix32(c ^ Math.imul(ehi, 0x6b43a9b5) ^ a);
  [, a] = splitmix32(c ^ b);
  // 21 high bits from `b`, 32 low bits from `a`.
  return (b >>> 11) * TWO_32 + a;
}

/**
 * A seedable pseudo-random generator with checkpointable state (the role of
 * `torch.Generator` in Accelerate's data pipeline).
 */
export class Generator {
  private readonly s = new Uint32Array(4);
  private seedValue = DEFAULT_SEED;

  /** @param seed start seed; defaults to {@link DEFAULT_SEED}. */
  constructor(seed: number = DEFAULT_SEED) {
    this.manualSeed(seed);
  }

  /** Restart the stream from `seed` (any safe integer). Returns `this`. */
  manualSeed(seed: number): this {
    checkSeed('Generator.manualSeed', seed);
    this.seedValue = seed;
    const [lo, hi] = halves(seed);
    let c = lo ^ Math.imul(hi, 0x5bd1e995);
    for (let i = 0; i < 4; i++) {
      const [next, out] = splitmix32(c);
      c = next;
      this.s[i] = out;
    }
    // All-zero is xoshiro's only fixed point.
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
    return this;
  }

  /** The seed the current stream started from. */
  get initialSeed(): number {
    return this.seedValue;
  }

  /** A copy of the full state (JSON-able). */
  getState(): GeneratorState {
    return { algorithm: 'xoshiro128**', seed: this.seedValue, words: [this.s[0], this.s[1], this.s[2], this.s[3]] };
  }

  /** Restore a state from {@link getState}. Returns `this`. */
  setState(state: GeneratorState): this {
    if (
      state === null ||
      typeof state !== 'object' ||
      state.algorithm !== 'xoshiro128**' ||
      !Array.isArray(state.words) ||
      state.words.length !== 4 ||
      !state.words.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_32)
    ) {
      throw new TypeError(
        `Generator.setState: expected { algorithm: 'xoshiro128**', seed, words: [4 unsigned 32-bit integers] } from getState(), got ${JSON.stringify(state)}.`,
      );
    }
    checkSeed('Generator.setState', state.seed);
    this.seedValue = state.seed;
    for (let i = 0; i < 4; i++) this.s[i] = state.words[i];
    return this;
  }

  /** A new generator with the same state. */
  clone(): Generator {
    return new Generator().setState(this.getState());
  }

  /** Next unsigned 32-bit integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /**
   * Uniform integer in `[low, high)` without modulo bias. With one argument,
   * `[0, low)`. The range may be up to 2^53 wide.
   */
  randint(low: number, high?: number): number {
    if (high === undefined) {
      high = low;
      low = 0;
    }
    if (!Number.isSafeInteger(low) || !Number.isSafeInteger(high) || high <= low) {
      throw new RangeError(`Generator.randint: need integers low < high, got [${low}, ${high}).`);
    }
    const range = high - low;
    if (range <= TWO_32) return low + this.below32(range);
    // Wide range: rejection on 53-bit draws.
    const limit = Math.floor(9007199254740992 / range) * range;
    for (;;) {
      const x = (this.nextUint32() >>> 11) * TWO_32 + this.nextUint32();
      if (x < limit) return low + (x % range);
    }
  }

  /** Uniform integer in [0, n) for 1 <= n <= 2^32, by rejection (no bias). */
  private below32(n: number): number {
    if (n === TWO_32) return this.nextUint32();
    const limit = TWO_32 - (TWO_32 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** A uniformly random permutation of `0..n-1` (Fisher–Yates). */
  randperm(n: number): number[] {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`Generator.randperm: n must be a non-negative integer, got ${String(n)}.`);
    }
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.below32(i + 1);
      const t = out[i];
      out[i] = out[j];
      out[j] = t;
    }
    return out;
  }

  /** A seed for a fresh generator, drawn from this stream (as PyTorch draws one from its default RNG). */
  drawSeed(): number {
    return (this.nextUint32() >>> 11) * TWO_32 + this.nextUint32();
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

let defaultGen = new Generator(DEFAULT_SEED);

/** The process-wide default generator (PyTorch's `default_generator`), used when a sampler has none of its own. */
export function defaultGenerator(): Generator {
  return defaultGen;
}

/**
 * Reseed core's default data generator (only it: `setSeed` seeds it and every backend).
 * Not `manualSeed`, which names reseeding one generator (`Generator#manualSeed`, a backend's `rng.manualSeed`, `torch.manualSeed`).
 */
export function seedDataGenerator(seed: number): Generator {
  return defaultGen.manualSeed(seed);
}

/** The seed the default generator was last seeded with (`torch.initial_seed()`). */
export function initialSeed(): number {
  return defaultGen.initialSeed;
}

/** Replace the default generator with a fresh one at {@link DEFAULT_SEED} (tests). */
export function resetDefaultGenerator(): void {
  defaultGen = new Generator(DEFAULT_SEED);
}
