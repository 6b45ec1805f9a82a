/**
 * A small seedable pseudo-random generator for test fixtures and the
 * reference backend. Deterministic across platforms (32-bit integer math
 * only), with a state that can be saved and restored as bytes.
 * @module
 */

const STATE_BYTES = 16;

/** splitmix32 step: spreads a seed over well-mixed 32-bit words. */
function splitmix32(x: number): [number, number] {
  const next = (x + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [next, z >>> 0];
}

/**
 * xoshiro128** generator. Used instead of `Math.random` so that fixtures
 * (datasets, parameter initialisation) replay exactly from a seed, and so
 * that RNG state can be checkpointed like PyTorch's.
 */
export class SeededRandom {
  private s = new Uint32Array(4);

  /** @param seed any safe integer; the same seed always gives the same stream. */
  constructor(seed = 0) {
    this.seed(seed);
  }

  /** Restart the stream from `seed` (a safe integer). */
  seed(seed: number): void {
    if (!Number.isSafeInteger(seed)) {
      throw new TypeError(`SeededRandom.seed: seed must be a safe integer, got ${String(seed)}. Pass an integer such as 42.`);
    }
    // Fold the high bits in so that seeds above 2^32 still differ.
    const lo = seed | 0;
    const hi = Math.floor(seed / 0x1_0000_0000) | 0;
    let x = lo ^ Math.imul(hi, 0x27d4eb2d);
    for (let i = 0; i < 4; i++) {
      const [next, out] = splitmix32(x);
      x = next;
      this.s[i] = out;
    }
    // The all-zero state is a fixed point of xoshiro; splitmix never yields it in practice, guard anyway.
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** Next 32-bit unsigned integer. */
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
  random(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
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
    return new Uint8Array(this.s.slice().buffer);
  }

  /** Restore a state returned by {@link SeededRandom.getState}. */
  setState(state: Uint8Array): void {
    if (!(state instanceof Uint8Array) || state.byteLength !== STATE_BYTES) {
      throw new TypeError(
        `SeededRandom.setState: expected a Uint8Array of ${STATE_BYTES} bytes (from getState()), got ${describe(state)}.`,
      );
    }
    const copy = new Uint8Array(STATE_BYTES);
    copy.set(state);
    const words = new Uint32Array(copy.buffer);
    if ((words[0] | words[1] | words[2] | words[3]) === 0) {
      throw new RangeError('SeededRandom.setState: the all-zero state is invalid for xoshiro128**; pass a state from getState().');
    }
    this.s = words;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function describe(x: unknown): string {
  if (x instanceof Uint8Array) return `${x.byteLength} bytes`;
  if (x === null) return 'null';
  return typeof x === 'object' ? (x.constructor?.name ?? 'object') : typeof x;
}
