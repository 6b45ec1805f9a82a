/**
 * Accelerate's `RegressionDataset` test fixture: samples of `y = a·x + b + noise`.
 * @module
 */
import { SeededRandom } from './prng.js';

/** One sample of {@link RegressionDataset}, as a map-style dataset item. */
export interface RegressionSample {
  x: number;
  y: number;
}

/** Options of {@link RegressionDataset}. */
export interface RegressionDatasetOptions {
  /** Slope (default 2). */
  a?: number;
  /** Intercept (default 3). */
  b?: number;
  /** Number of samples (default 64). */
  length?: number;
  /** Seed of the sample generator (default 42); the same seed gives the same samples. */
  seed?: number;
}

/**
 * `length` samples `{ x, y }` with `x ~ N(0, 1)` and `y = a·x + b + N(0, 0.1²)`,
 * stored as float32 like Accelerate's fixture and deterministic from `seed`.
 * Map-style: `length`, `getItem(i)`, and iteration in index order.
 */
export class RegressionDataset implements Iterable<RegressionSample> {
  /** Inputs, float32. */
  readonly x: Float32Array;
  /** Targets, float32. */
  readonly y: Float32Array;
  /** Number of samples. */
  readonly length: number;

  constructor(options: RegressionDatasetOptions = {}) {
    const { a = 2, b = 3, length = 64, seed = 42 } = options;
    if (!Number.isInteger(length) || length < 0) {
      throw new RangeError(`RegressionDataset: length must be a non-negative integer, got ${length}.`);
    }
    const rng = new SeededRandom(seed);
    this.length = length;
    this.x = new Float32Array(length);
    for (let i = 0; i < length; i++) this.x[i] = rng.normal();
    this.y = new Float32Array(length);
    for (let i = 0; i < length; i++) this.y[i] = a * this.x[i] + b + Math.fround(rng.normal(0, 0.1));
  }

  /** Sample `index` (negative indices count from the end, like Python). */
  getItem(index: number): RegressionSample {
    const i = index < 0 ? index + this.length : index;
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new RangeError(`RegressionDataset.getItem: index ${index} is out of range for ${this.length} samples.`);
    }
    return { x: this.x[i], y: this.y[i] };
  }

  /** Sample `index`: makes the dataset a map-style `Dataset` for `DataLoader`. */
  get(index: number): RegressionSample {
    return this.getItem(index);
  }

  *[Symbol.iterator](): Iterator<RegressionSample> {
    for (let i = 0; i < this.length; i++) yield { x: this.x[i], y: this.y[i] };
  }
}
