/**
 * The tensor operations core's generic helpers need ({@link TensorOps}), and
 * an implementation over {@link HostTensor} ({@link hostTensorOps}) for code
 * that runs without a backend: data loaders before a backend is chosen, core's
 * own tests, and host-only collectives.
 * @module
 */
import type { Backend } from '../interfaces/backend.js';
import { HostTensor, hostArrayConstructor, type DType, type HostArray } from '../tensor/host-tensor.js';
import {
  bfloat16BitsToNumber,
  float16BitsToNumber,
  numberToBfloat16Bits,
  numberToFloat16Bits,
} from './float16.js';

/**
 * The tensor subset of {@link Backend}: what structure helpers and
 * collectives use. Any `Backend<T>` can be passed where a `TensorOps<T>` is
 * expected.
 */
export interface TensorOps<T>
  extends Pick<
    Backend<T>,
    | 'isTensor'
    | 'shape'
    | 'dtype'
    | 'device'
    | 'toDevice'
    | 'fromHost'
    | 'toHost'
    | 'cat'
    | 'narrow'
    | 'fullLike'
    | 'mulScalar'
    | 'dispose'
  > {
  /**
   * Elementwise cast to `dtype` (new tensor). Optional: {@link convertToFp32}
   * needs it and falls back to a host round trip when it is missing.
   */
  cast?(t: T, dtype: DType): T;
}

const INTEGER_DTYPES: ReadonlySet<DType> = new Set(['int8', 'int16', 'int32', 'int64', 'uint8', 'bool']);

/** True for integer and bool dtypes. */
export function isIntegerDType(dtype: DType): boolean {
  return INTEGER_DTYPES.has(dtype);
}

/** Elements of `t` as numbers: float16/bfloat16 decoded, int64 via `Number`, bool as 0/1. */
export function hostTensorToNumbers(t: HostTensor): number[] {
  const out = new Array<number>(t.data.length);
  const data = t.data;
  if (t.dtype === 'float16') {
    for (let i = 0; i < data.length; i++) out[i] = float16BitsToNumber(data[i] as number);
  } else if (t.dtype === 'bfloat16') {
    for (let i = 0; i < data.length; i++) out[i] = bfloat16BitsToNumber(data[i] as number);
  } else {
    for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  }
  return out;
}

/**
 * A host array of `dtype` holding `values`, converted the way a tensor cast
 * does: float16/bfloat16 encoded, integers truncated toward zero, bool as 0/1.
 */
export function numbersToHostArray(values: ArrayLike<number>, dtype: DType): HostArray {
  const n = values.length;
  switch (dtype) {
    case 'float16': {
      const a = new Uint16Array(n);
      for (let i = 0; i < n; i++) a[i] = numberToFloat16Bits(values[i]);
      return a;
    }
    case 'bfloat16': {
      const a = new Uint16Array(n);
      for (let i = 0; i < n; i++) a[i] = numberToBfloat16Bits(values[i]);
      return a;
    }
    case 'int64': {
      const a = new BigInt64Array(n);
      for (let i = 0; i < n; i++) a[i] = BigInt(Math.trunc(values[i]));
      return a;
    }
    case 'bool': {
      const a = new Uint8Array(n);
      for (let i = 0; i < n; i++) a[i] = values[i] !== 0 ? 1 : 0;
      return a;
    }
    default: {
      const Ctor = hostArrayConstructor(dtype) as Float64ArrayConstructor;
      const a = new Ctor(n);
      for (let i = 0; i < n; i++) a[i] = isIntegerDType(dtype) ? Math.trunc(values[i]) : values[i];
      return a;
    }
  }
}

/** A HostTensor of `dtype` and `shape` holding `values` (converted as {@link numbersToHostArray} does). */
export function hostTensorFromNumbers(values: ArrayLike<number>, shape: readonly number[], dtype: DType): HostTensor {
  return new HostTensor(numbersToHostArray(values, dtype), shape, dtype);
}

function product(xs: readonly number[]): number {
  let p = 1;
  for (const x of xs) p *= x;
  return p;
}

function normaliseDim(dim: number, ndim: number, what: string): number {
  const d = dim < 0 ? dim + ndim : dim;
  if (!Number.isInteger(d) || d < 0 || d >= ndim) {
    throw new RangeError(
      `${what}: dim ${dim} is out of range for a tensor with ${ndim} dimension(s); use a dim in [${-ndim}, ${ndim - 1}].`,
    );
  }
  return d;
}

function isCpuDevice(device: string | undefined): boolean {
  return device === undefined || device === 'cpu' || device.startsWith('cpu:');
}

function assertHostDevice(device: string | undefined, what: string): void {
  if (!isCpuDevice(device)) {
    throw new Error(
      `${what}: HostTensor lives in host memory and cannot be placed on device '${device}'. ` +
        `Pass a backend's tensor ops (e.g. accelerator.backend, or new Accelerator({ backend: 'libtorch' }).backend) to use '${device}'.`,
    );
  }
}

/** Copy of `t` with a new typed array (same dtype and shape). */
function cloneHost(t: HostTensor): HostTensor {
  return new HostTensor(t.data.slice() as HostArray, t.shape, t.dtype);
}

/**
 * {@link TensorOps} over {@link HostTensor}: every tensor lives on `cpu`,
 * results are fresh tensors (no views), and dtype rules follow PyTorch
 * (an integer tensor times a non-integer scalar becomes float32, a bool
 * tensor times a number becomes int64 or float32).
 */
export const hostTensorOps: TensorOps<HostTensor> & { cast(t: HostTensor, dtype: DType): HostTensor } = {
  isTensor(x: unknown): x is HostTensor {
    return x instanceof HostTensor;
  },

  shape(t: HostTensor): number[] {
    return [...t.shape];
  },

  dtype(t: HostTensor): DType {
    return t.dtype;
  },

  device(): string {
    return 'cpu';
  },

  toDevice(t: HostTensor, device: string): HostTensor {
    assertHostDevice(device, 'hostTensorOps.toDevice');
    return t;
  },

  fromHost(h: HostTensor, device?: string): HostTensor {
    assertHostDevice(device, 'hostTensorOps.fromHost');
    return h;
  },

  toHost(t: HostTensor): HostTensor {
    return t;
  },

  cat(tensors: HostTensor[], dim: number): HostTensor {
    if (tensors.length === 0) throw new RangeError('hostTensorOps.cat: got an empty list; pass at least one tensor.');
    const first = tensors[0];
    if (first.shape.length === 0) {
      throw new RangeError('hostTensorOps.cat: zero-dimensional tensors cannot be concatenated; give them a dimension of length 1 first.');
    }
    const d = normaliseDim(dim, first.shape.length, 'hostTensorOps.cat');
    for (const [i, t] of tensors.entries()) {
      if (t.dtype !== first.dtype) {
        throw new TypeError(
          `hostTensorOps.cat: tensor ${i} has dtype ${t.dtype} but tensor 0 has ${first.dtype}; cast them to one dtype first.`,
        );
      }
      const same = t.shape.length === first.shape.length && t.shape.every((s, k) => k === d || s === first.shape[k]);
      if (!same) {
        throw new RangeError(
          `hostTensorOps.cat: tensor ${i} has shape [${t.shape.join(', ')}] but tensor 0 has [${first.shape.join(', ')}]; ` +
            `all sizes except dim ${d} must match.`,
        );
      }
    }
    const outer = product(first.shape.slice(0, d));
    const inner = product(first.shape.slice(d + 1));
    const total = tensors.reduce((acc, t) => acc + t.shape[d], 0);
    const Ctor = hostArrayConstructor(first.dtype) as unknown as { new (n: number): HostArray };
    const out = new Ctor(outer * total * inner);
    let offset = 0;
    for (let o = 0; o < outer; o++) {
      for (const t of tensors) {
        const chunk = t.shape[d] * inner;
        (out as Float64Array).set((t.data as Float64Array).subarray(o * chunk, (o + 1) * chunk), offset);
        offset += chunk;
      }
    }
    const shape = [...first.shape];
    shape[d] = total;
    return new HostTensor(out, shape, first.dtype);
  },

  narrow(t: HostTensor, dim: number, start: number, length: number): HostTensor {
    const d = normaliseDim(dim, t.shape.length, 'hostTensorOps.narrow');
    const size = t.shape[d];
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > size) {
      throw new RangeError(
        `hostTensorOps.narrow: start ${start} and length ${length} do not fit dim ${d} of size ${size}; need 0 <= start and start + length <= ${size}.`,
      );
    }
    const outer = product(t.shape.slice(0, d));
    const inner = product(t.shape.slice(d + 1));
    const Ctor = hostArrayConstructor(t.dtype) as unknown as { new (n: number): HostArray };
    const out = new Ctor(outer * length * inner);
    for (let o = 0; o < outer; o++) {
      const src = (o * size + start) * inner;
      (out as Float64Array).set((t.data as Float64Array).subarray(src, src + length * inner), o * length * inner);
    }
    const shape = [...t.shape];
    shape[d] = length;
    return new HostTensor(out, shape, t.dtype);
  },

  fullLike(like: HostTensor, shape: number[], value: number): HostTensor {
    const n = product(shape);
    const values = new Array<number>(n).fill(value);
    return hostTensorFromNumbers(values, shape, like.dtype);
  },

  mulScalar(t: HostTensor, value: number): HostTensor {
    let outDtype: DType = t.dtype;
    if (isIntegerDType(t.dtype)) {
      if (!Number.isInteger(value)) outDtype = 'float32';
      else if (t.dtype === 'bool') outDtype = 'int64';
    }
    if (outDtype === 'int64' && t.dtype === 'int64') {
      // Stay in bigint so large int64 values keep their precision.
      const src = t.data as BigInt64Array;
      const out = new BigInt64Array(src.length);
      const factor = BigInt(value);
      for (let i = 0; i < src.length; i++) out[i] = src[i] * factor;
      return new HostTensor(out, t.shape, 'int64');
    }
    const values = hostTensorToNumbers(t);
    for (let i = 0; i < values.length; i++) values[i] *= value;
    return hostTensorFromNumbers(values, t.shape, outDtype);
  },

  cast(t: HostTensor, dtype: DType): HostTensor {
    if (dtype === t.dtype) return cloneHost(t);
    return hostTensorFromNumbers(hostTensorToNumbers(t), t.shape, dtype);
  },
};
