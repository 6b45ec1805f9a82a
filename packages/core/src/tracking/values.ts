/**
 * What trackers may receive, and how user input becomes events: the bad-input
 * policy for metrics (never crash training, warn once per key), image
 * normalisation and histogram binning.
 * @module
 */
import type { LogValue } from '../interfaces/tracker.js';
import { HostTensor } from '../tensor/host-tensor.js';
import type { HistogramData, TrackerImage } from './events.js';

/** Why a logged value did not reach the trackers. */
export interface ValueProblem {
  /** Metric key (`group/inner` for a value inside a `{name: number}` group). */
  key: string;
  /** `non-finite` (NaN, ±Infinity) or `non-numeric` (objects, arrays, null, …). */
  kind: 'non-finite' | 'non-numeric';
  /** Short description of the value (`NaN`, `an array`, `null`, …). */
  value: string;
}

function describe(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  if (v instanceof HostTensor) return `a HostTensor of shape [${v.shape.join(', ')}]`;
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

/**
 * The part of `values` trackers can take: finite numbers, strings, booleans,
 * and groups `{name: finite number}` (bad entries inside a group are dropped,
 * the rest kept). Bigints become numbers and a one-element tensor its number.
 * Everything else is listed in `problems`.
 */
export function sanitizeLogValues(values: Record<string, unknown>): { values: Record<string, LogValue>; problems: ValueProblem[] } {
  const out: Record<string, LogValue> = {};
  const problems: ValueProblem[] = [];
  for (const [key, raw] of Object.entries(values)) {
    let v = raw;
    if (typeof v === 'bigint') v = Number(v);
    if (v instanceof HostTensor && v.numel === 1) v = Number(v.data[0]);
    if (typeof v === 'number') {
      if (Number.isFinite(v)) out[key] = v;
      else problems.push({ key, kind: 'non-finite', value: describe(v) });
    } else if (typeof v === 'string' || typeof v === 'boolean') {
      out[key] = v;
    } else if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype && Object.keys(v).length > 0) {
      const group: Record<string, number> = {};
      let numeric = 0;
      for (const [inner, iv] of Object.entries(v as Record<string, unknown>)) {
        const n = typeof iv === 'bigint' ? Number(iv) : iv;
        if (typeof n === 'number' && Number.isFinite(n)) {
          group[inner] = n;
          numeric++;
        } else {
          problems.push({ key: `${key}/${inner}`, kind: typeof n === 'number' ? 'non-finite' : 'non-numeric', value: describe(n) });
        }
      }
      if (numeric > 0) out[key] = group;
    } else {
      problems.push({ key, kind: 'non-numeric', value: describe(v) });
    }
  }
  return { values: out, problems };
}

/** What `logImages` accepts for one image. */
export type ImageInput =
  /** PNG file bytes. */
  | Uint8Array
  /** Raw 8-bit pixels, row-major height x width x channels. */
  | { data: Uint8Array | Uint8ClampedArray | readonly number[]; width: number; height: number; channels?: 1 | 3 | 4 }
  /** `[H, W]` or `[H, W, C]` (C = 1, 3 or 4); uint8 as is, floating point in [0, 1] scaled to 0..255. */
  | HostTensor;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** True when `bytes` start with the PNG signature. */
export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b);
}

/** A normalised {@link TrackerImage}; throws an error naming `key` and the fix for input it cannot read. */
export function normalizeImage(key: string, input: ImageInput): TrackerImage {
  if (input instanceof HostTensor) {
    const [h, w, c = 1] = input.shape;
    if ((input.shape.length !== 2 && input.shape.length !== 3) || ![1, 3, 4].includes(c)) {
      throw new RangeError(`logImages: image "${key}" has shape [${input.shape.join(', ')}]; pass [height, width] or [height, width, channels] with 1, 3 or 4 channels.`);
    }
    const floating = input.dtype.startsWith('float') || input.dtype === 'bfloat16';
    const data = new Uint8Array(input.numel);
    for (let i = 0; i < data.length; i++) {
      const x = Number(input.data[i]);
      data[i] = Math.max(0, Math.min(255, Math.round(floating ? x * 255 : x)));
    }
    return { format: 'raw', width: w, height: h, channels: c as 1 | 3 | 4, data };
  }
  if (input instanceof Uint8Array) {
    if (!isPng(input)) {
      throw new TypeError(`logImages: image "${key}" is a Uint8Array without the PNG signature; pass PNG bytes, or { data, width, height, channels } for raw pixels.`);
    }
    return { format: 'png', data: input };
  }
  const { width, height } = input;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`logImages: image "${key}" has width ${width} and height ${height}; both must be whole numbers >= 1.`);
  }
  const channels = input.channels ?? input.data.length / (width * height);
  if (![1, 3, 4].includes(channels) || input.data.length !== width * height * channels) {
    throw new RangeError(
      `logImages: image "${key}" has ${input.data.length} values for ${width}x${height}` +
        `${input.channels ? ` with ${input.channels} channels` : ''}; raw pixels need width*height*channels values with 1, 3 or 4 channels.`,
    );
  }
  const data = input.data instanceof Uint8Array ? input.data : Uint8Array.from(input.data, (x) => Math.max(0, Math.min(255, Math.round(x))));
  return { format: 'raw', width, height, channels: channels as 1 | 3 | 4, data };
}

/**
 * Bin `values` into `bins` equal-width buckets between their min and max
 * (TensorBoard's default layout). Non-finite values are left out.
 */
export function histogramOf(values: ArrayLike<number | bigint> | HostTensor, bins = 30): HistogramData {
  if (!Number.isInteger(bins) || bins < 1) throw new RangeError(`histogram bins must be a whole number >= 1, got ${bins}.`);
  const src = values instanceof HostTensor ? values.data : values;
  const xs: number[] = [];
  for (let i = 0; i < src.length; i++) {
    const x = Number(src[i]);
    if (Number.isFinite(x)) xs.push(x);
  }
  if (xs.length === 0) return { min: 0, max: 0, num: 0, sum: 0, sumSquares: 0, bucketLimits: [], bucketCounts: [] };
  let min = Infinity, max = -Infinity, sum = 0, sumSquares = 0;
  for (const x of xs) {
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
    sumSquares += x * x;
  }
  if (min === max) return { min, max, num: xs.length, sum, sumSquares, bucketLimits: [max], bucketCounts: [xs.length] };
  const width = (max - min) / bins;
  const bucketLimits = Array.from({ length: bins }, (_, i) => (i === bins - 1 ? max : min + width * (i + 1)));
  const bucketCounts = new Array<number>(bins).fill(0);
  for (const x of xs) {
    // (limit[i-1], limit[i]]: the smallest i whose right edge is >= x.
    let i = Math.min(bins - 1, Math.max(0, Math.ceil((x - min) / width) - 1));
    while (i > 0 && x <= bucketLimits[i - 1]) i--;
    while (i < bins - 1 && x > bucketLimits[i]) i++;
    bucketCounts[i]++;
  }
  return { min, max, num: xs.length, sum, sumSquares, bucketLimits, bucketCounts };
}
