/**
 * Sizes in bytes: `"5GB"`-style strings (shard limits, `max_memory`) and the
 * storage size of one element of a dtype.
 * @module
 */

const NUMBER = /^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$/;

// Longest suffixes first so "GiB" is not read as "B".
const UNITS: Array<[suffix: string, factor: number, decimal: boolean]> = [
  ['GIB', 2 ** 30, false],
  ['MIB', 2 ** 20, false],
  ['KIB', 2 ** 10, false],
  ['GB', 1e9, true],
  ['MB', 1e6, true],
  ['KB', 1e3, true],
];

/**
 * Bytes in `size`: an integer is returned as is; a string is a number
 * followed by a unit, binary (`KiB`, `MiB`, `GiB`) or decimal (`KB`, `MB`,
 * `GB`), case-insensitive, where a decimal unit written with a lower-case
 * `b` (`"8Gb"`) means bits (divided by 8). Fractions are truncated:
 * `"1.5GB"` → 1500000000.
 *
 * @throws RangeError for negative sizes, unknown units, or malformed numbers
 * (`"5MBB"`, `"5k0MB"`, `"-1GB"`).
 */
export function convertFileSizeToInt(size: number | string): number {
  const invalid = () =>
    new RangeError(
      `size ${JSON.stringify(size)} is not in a valid format. Use an integer for bytes, or a string with a unit (like '5.0GB').`,
    );
  if (typeof size === 'number') {
    if (!Number.isInteger(size) || size < 0) throw invalid();
    return size;
  }
  if (typeof size !== 'string') throw invalid();
  const upper = size.toUpperCase();
  for (const [suffix, factor, decimal] of UNITS) {
    if (!upper.endsWith(suffix)) continue;
    const numberPart = size.slice(0, -suffix.length);
    if (!NUMBER.test(numberPart)) throw invalid();
    let bytes = Math.trunc(Number(numberPart) * factor);
    if (decimal && size.endsWith('b')) bytes = Math.floor(bytes / 8);
    if (!Number.isFinite(bytes) || bytes < 0) throw invalid();
    // Normalise -0 from inputs like "-0MB".
    return bytes === 0 ? 0 : bytes;
  }
  throw invalid();
}

/** Alias of {@link convertFileSizeToInt}. */
export const parseSize = convertFileSizeToInt;

/**
 * Bytes per element, by PyTorch dtype name (with or without a `torch.`
 * prefix; short aliases `fp16`, `bf16`, `fp32`, `half`, `float`, `double`,
 * `long`, `int`, `short` accepted). `bool` is 1/8 (a bit), `int4` 1/2,
 * `int2` 1/4, every float8 variant 1. Other names ending in a bit width
 * (`uint16`, `complex64`) give width / 8.
 * @throws RangeError for names that carry no size.
 */
export function dtypeByteSize(dtype: string): number {
  const name = dtype.startsWith('torch.') ? dtype.slice('torch.'.length) : dtype;
  const known: Record<string, number> = {
    bool: 1 / 8,
    int2: 1 / 4,
    int4: 1 / 2,
    fp8: 1,
    half: 2,
    fp16: 2,
    bf16: 2,
    float: 4,
    fp32: 4,
    double: 8,
    fp64: 8,
    long: 8,
    int: 4,
    short: 2,
  };
  if (name in known) return known[name];
  if (name.startsWith('float8_')) return 1;
  const match = /[^\d](\d+)$/.exec(name);
  if (!match) {
    throw new RangeError(`dtypeByteSize: ${JSON.stringify(dtype)} is not a valid dtype; use a name such as 'float32', 'bfloat16' or 'int8'.`);
  }
  return Math.floor(Number(match[1]) / 8);
}
