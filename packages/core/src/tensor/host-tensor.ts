/**
 * Backend-free tensors: a typed array plus a shape. Core uses them for data
 * batches produced before a backend is known, for collectives on plain host
 * buffers, and as the exchange format between backends (`Backend.toHost` /
 * `Backend.fromHost`).
 * @module
 */

/** Element types shared by every backend. Names follow PyTorch's. */
export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'bool';

/** Typed arrays a {@link HostTensor} can hold. float16/bfloat16 are stored as raw bits in a Uint16Array. */
export type HostArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array;

const BYTES: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  uint8: 1,
  bool: 1,
};

/** Bytes per element of `dtype` as stored in memory (bool takes one byte). */
export function dtypeElementBytes(dtype: DType): number {
  return BYTES[dtype];
}

/** The typed-array constructor that stores `dtype`. */
export function hostArrayConstructor(dtype: DType) {
  switch (dtype) {
    case 'float32':
      return Float32Array;
    case 'float64':
      return Float64Array;
    case 'float16':
    case 'bfloat16':
      return Uint16Array;
    case 'int8':
      return Int8Array;
    case 'int16':
      return Int16Array;
    case 'int32':
      return Int32Array;
    case 'int64':
      return BigInt64Array;
    case 'uint8':
    case 'bool':
      return Uint8Array;
  }
}

/** A dense, row-major tensor in host memory. Immutable shape; data may be shared. */
export class HostTensor {
  /** Typed array holding `numel` elements in row-major order. */
  readonly data: HostArray;
  /** Size of each dimension; `[]` for a scalar. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;

  constructor(data: HostArray, shape: readonly number[], dtype: DType) {
    const numel = shape.reduce((a, b) => a * b, 1);
    if (data.length !== numel) {
      throw new RangeError(
        `HostTensor: data has ${data.length} elements but shape [${shape.join(', ')}] needs ${numel}. Pass a shape whose product equals the data length.`,
      );
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
  }

  /** Number of elements. */
  get numel(): number {
    return this.data.length;
  }

  /** Elements as plain numbers (int64 converted with `Number`). */
  toArray(): number[] {
    const out = new Array<number>(this.data.length);
    for (let i = 0; i < this.data.length; i++) out[i] = Number(this.data[i]);
    return out;
  }

  /**
   * Build a tensor from numbers. Integers become int64 and anything else
   * float64, as PyTorch's default collate does, unless `dtype` is given.
   */
  static fromNumbers(values: readonly number[], shape: readonly number[] = [values.length], dtype?: DType): HostTensor {
    const dt: DType = dtype ?? (values.every(Number.isInteger) ? 'int64' : 'float64');
    const Ctor = hostArrayConstructor(dt);
    const data = Ctor === BigInt64Array ? int64FromNumbers(values) : (Ctor as Float64ArrayConstructor).from(values);
    return new HostTensor(data as HostArray, shape, dt);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Numbers truncated into an int64 array. Class labels and indices fit in 32 bits:
 * on little-endian hosts both halves of such a value are written through an int32
 * view instead of making a BigInt per element (collate does this for every batch).
 */
function int64FromNumbers(values: readonly number[]): BigInt64Array {
  const out = new BigInt64Array(values.length);
  const words = LITTLE_ENDIAN ? new Int32Array(out.buffer) : undefined;
  for (let i = 0; i < values.length; i++) {
    const v = Math.trunc(values[i]);
    if (words && v >= -2147483648 && v <= 2147483647) {
      words[2 * i] = v;
      words[2 * i + 1] = v < 0 ? -1 : 0;
    } else out[i] = BigInt(v);
  }
  return out;
}

/** True for any typed array a {@link HostTensor} can hold. */
export function isHostArray(x: unknown): x is HostArray {
  return ArrayBuffer.isView(x) && !(x instanceof DataView);
}

/** dtype of a typed array (Uint16Array is reported as float16 raw bits). */
export function dtypeOfHostArray(a: HostArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Uint16Array) return 'float16';
  return 'uint8';
}
