/**
 * Tensors and a minimal reverse-mode autograd for the reference backend.
 *
 * Pure JavaScript over typed arrays, CPU only, no views, no SIMD: enough to
 * train the test fixtures (regression and linear models) exactly, and slow
 * on purpose-free code paths so that the semantics stay obvious. Arithmetic
 * is done in float64 and stored in the tensor's dtype (float32 rounds on
 * store, as it would on an fp32 device).
 * @module
 */
import type { MixedPrecision } from '../interfaces/backend.js';
import { HostTensor, hostArrayConstructor, type DType, type HostArray } from '../tensor/host-tensor.js';
import { SeededRandom } from './prng.js';

/** dtypes the reference backend can store. float16/bfloat16 need real half arithmetic and are refused. */
export const REFERENCE_DTYPES: readonly DType[] = Object.freeze([
  'float32',
  'float64',
  'int64',
  'int32',
  'int16',
  'int8',
  'uint8',
  'bool',
]);

const RANK: Partial<Record<DType, number>> = {
  bool: 0,
  uint8: 1,
  int8: 2,
  int16: 3,
  int32: 4,
  int64: 5,
  float32: 6,
  float64: 7,
};

/** True for the floating dtypes the reference backend computes in. */
export function isFloatingDType(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
}

function checkDType(dtype: DType, where: string): void {
  if (RANK[dtype] === undefined) {
    throw new TypeError(
      `${where}: dtype '${dtype}' is not supported by the reference backend (it has no half-precision arithmetic). Use one of ${REFERENCE_DTYPES.join(', ')}.`,
    );
  }
}

/** PyTorch-like type promotion between two stored dtypes. */
function promote(a: DType, b: DType): DType {
  return RANK[a]! >= RANK[b]! ? a : b;
}

/** A typed array of `dtype` holding `values` (floats are truncated for integer dtypes, as a cast would). */
function castValues(values: ArrayLike<number>, dtype: DType): HostArray {
  const n = values.length;
  if (dtype === 'int64') {
    const out = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      out[i] = Number.isFinite(v) ? BigInt(Math.trunc(v)) : 0n;
    }
    return out;
  }
  if (dtype === 'bool') {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = values[i] !== 0 ? 1 : 0;
    return out;
  }
  const Ctor = hostArrayConstructor(dtype) as Float64ArrayConstructor;
  const out = new Ctor(n);
  if (isFloatingDType(dtype)) out.set(values);
  else for (let i = 0; i < n; i++) out[i] = Math.trunc(values[i]);
  return out as HostArray;
}

function toFloat64(data: HostArray): Float64Array {
  if (data instanceof Float64Array) return data.slice();
  const out = new Float64Array(data.length);
  if (data instanceof BigInt64Array) for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  else out.set(data as ArrayLike<number>);
  return out;
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** One recorded operation of the autograd graph (internal to the reference backend). */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly RefTensor[];
  /** Gradients with respect to each input, given the gradient of the output (null: input needs none). */
  readonly backward: (gradOut: Float64Array) => Array<Float64Array | null>;
  released: boolean;
}

// ---- global autograd / autocast state (like PyTorch's thread-local state) ----

let gradEnabled = true;
const autocastStack: MixedPrecision[] = [];

/** Run `fn` without recording operations for autograd (PyTorch's `torch.no_grad()`). */
export function noGrad<R>(fn: () => R): R {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Precision of the innermost active autocast region, `'no'` outside autocast or inside a disabled one. */
export function activeAutocastPrecision(): MixedPrecision {
  return autocastStack.length === 0 ? 'no' : autocastStack[autocastStack.length - 1];
}

/**
 * Enter an autocast region. The reference backend has no half arithmetic, so
 * autocast only records the precision on the tensors computed inside
 * ({@link RefTensor.autocastPrecision}). A returned promise keeps the region
 * open until it settles.
 */
export function withAutocast<R>(precision: MixedPrecision, fn: () => R, enabled = true): R {
  autocastStack.push(enabled ? precision : 'no');
  let result: R;
  try {
    result = fn();
  } catch (e) {
    autocastStack.pop();
    throw e;
  }
  if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
    return (result as unknown as Promise<unknown>).finally(() => {
      autocastStack.pop();
    }) as R;
  }
  autocastStack.pop();
  return result;
}

/** The default generator, seeded by `ReferenceBackend.rng.manualSeed` and used by random tensor factories and parameter init. */
export const defaultGenerator = new SeededRandom(0);

/** A dense tensor of the reference backend. */
export class RefTensor {
  /** Row-major element storage. Replaced (not resized) when the tensor is cast in place. */
  data: HostArray;
  /** Size of each dimension. */
  readonly shape: readonly number[];
  /** Element type. */
  dtype: DType;
  /** Device name (`cpu`, or a simulated device configured on the backend). */
  device: string;
  /** Whether autograd tracks this tensor. Only floating tensors may require grad. */
  requiresGrad: boolean;
  /** Accumulated gradient of a leaf tensor, or null. */
  grad: RefTensor | null = null;
  /** Precision of the autocast region active when this tensor was computed (`'no'` outside autocast). */
  readonly autocastPrecision: MixedPrecision;
  /** @internal The operation that produced this tensor (null for leaves). */
  node: GradNode | null = null;

  constructor(data: HostArray, shape: readonly number[], dtype: DType, device = 'cpu', requiresGrad = false) {
    checkDType(dtype, 'RefTensor');
    if (data.length !== product(shape)) {
      throw new RangeError(
        `RefTensor: data has ${data.length} elements but shape ${fmtShape(shape)} needs ${product(shape)}.`,
      );
    }
    if (requiresGrad && !isFloatingDType(dtype)) {
      throw new TypeError(`RefTensor: only floating tensors can require grad, got dtype '${dtype}'.`);
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = device;
    this.requiresGrad = requiresGrad;
    this.autocastPrecision = activeAutocastPrecision();
  }

  /** Number of elements. */
  get numel(): number {
    return this.data.length;
  }

  /** True when the tensor was not produced by a recorded operation. */
  get isLeaf(): boolean {
    return this.node === null;
  }

  /** Elements as numbers. */
  toArray(): number[] {
    return Array.from(toFloat64(this.data));
  }

  /** The single element of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) {
      throw new RangeError(`RefTensor.item: tensor of shape ${fmtShape(this.shape)} has ${this.numel} elements; only one-element tensors convert to a number.`);
    }
    return Number(this.data[0]);
  }

  /** Copy to host memory. */
  toHost(): HostTensor {
    return new HostTensor(this.data.slice() as HostArray, this.shape, this.dtype);
  }

  /** Same storage, cut from the graph. */
  detach(): RefTensor {
    return new RefTensor(this.data, this.shape, this.dtype, this.device, false);
  }

  /** A copy (differentiable). */
  clone(): RefTensor {
    return unary(this, 'clone', (x) => x, (_x, g) => g);
  }

  /** Make this leaf tensor tracked by autograd (in place). Returns `this`. */
  requiresGrad_(flag = true): this {
    if (flag && !isFloatingDType(this.dtype)) {
      throw new TypeError(`requiresGrad_: only floating tensors can require grad, got dtype '${this.dtype}'.`);
    }
    if (!this.isLeaf) throw new Error('requiresGrad_: can only be set on leaf tensors; call detach() first.');
    this.requiresGrad = flag;
    return this;
  }

  add(other: RefTensor | number): RefTensor {
    return typeof other === 'number' ? addScalar(this, other) : binary(this, other, 'add');
  }

  sub(other: RefTensor | number): RefTensor {
    return typeof other === 'number' ? addScalar(this, -other) : binary(this, other, 'sub');
  }

  mul(other: RefTensor | number): RefTensor {
    return typeof other === 'number' ? mulScalar(this, other) : binary(this, other, 'mul');
  }

  div(other: RefTensor | number): RefTensor {
    return typeof other === 'number' ? mulScalar(this, 1 / other) : binary(this, other, 'div');
  }

  neg(): RefTensor {
    return mulScalar(this, -1);
  }

  square(): RefTensor {
    return unary(this, 'square', (x) => x * x, (x, g) => 2 * x * g);
  }

  /** Matrix product of 2-D tensors. */
  matmul(other: RefTensor): RefTensor {
    return matmul(this, other);
  }

  /** Transpose of a 2-D tensor. */
  t(): RefTensor {
    return transpose2d(this);
  }

  /** Same data, new shape (one dimension may be -1). */
  reshape(shape: readonly number[]): RefTensor {
    return reshape(this, shape);
  }

  /** Sum of all elements (a scalar). */
  sum(): RefTensor {
    return reduceAll(this, 'sum');
  }

  /** Mean of all elements (a scalar). */
  mean(): RefTensor {
    return reduceAll(this, 'mean');
  }

  /** Cast (differentiable between floating dtypes). Returns `this` when already `dtype`. */
  to(dtype: DType): RefTensor {
    return castTo(this, dtype);
  }
}

/** Build the result of an operation and record it for autograd when an input requires grad. */
function result(
  values: ArrayLike<number>,
  shape: readonly number[],
  dtype: DType,
  device: string,
  op: string,
  inputs: readonly RefTensor[],
  backward: GradNode['backward'],
): RefTensor {
  const out = new RefTensor(castValues(values, dtype), shape, dtype, device);
  if (gradEnabled && isFloatingDType(dtype) && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward, released: false };
  }
  return out;
}

function sameDevice(op: string, tensors: readonly RefTensor[]): string {
  const device = tensors[0].device;
  for (const t of tensors) {
    if (t.device !== device) {
      throw new Error(`${op}: expected all tensors on the same device, found '${device}' and '${t.device}'. Move them with toDevice first.`);
    }
  }
  return device;
}

function unary(
  x: RefTensor,
  op: string,
  f: (v: number) => number,
  df: (v: number, g: number) => number,
): RefTensor {
  const xv = toFloat64(x.data);
  const out = new Float64Array(xv.length);
  for (let i = 0; i < xv.length; i++) out[i] = f(xv[i]);
  return result(out, x.shape, x.dtype, x.device, op, [x], (g) => {
    const gx = new Float64Array(xv.length);
    for (let i = 0; i < xv.length; i++) gx[i] = df(xv[i], g[i]);
    return [gx];
  });
}

/** Integer inputs of float-only ops compute in float32, as PyTorch's default dtype. */
function floatOf(dtype: DType): DType {
  return isFloatingDType(dtype) ? dtype : 'float32';
}

/** Output shape of broadcasting `a` with `b` (NumPy rules). */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new RangeError(
        `shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together (dimension ${i}: ${da} vs ${db}).`,
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** For every element of `outShape`, the linear index of the element of `inShape` broadcast onto it. */
function broadcastIndex(inShape: readonly number[], outShape: readonly number[]): Int32Array {
  const n = product(outShape);
  const nd = outShape.length;
  const offset = nd - inShape.length;
  const strides = new Array<number>(nd).fill(0);
  let s = 1;
  for (let d = inShape.length - 1; d >= 0; d--) {
    strides[d + offset] = inShape[d] === 1 ? 0 : s;
    s *= inShape[d];
  }
  const idx = new Int32Array(n);
  const counter = new Array<number>(nd).fill(0);
  let cur = 0;
  for (let i = 0; i < n; i++) {
    idx[i] = cur;
    for (let d = nd - 1; d >= 0; d--) {
      counter[d]++;
      cur += strides[d];
      if (counter[d] < outShape[d]) break;
      cur -= strides[d] * outShape[d];
      counter[d] = 0;
    }
  }
  return idx;
}

type BinaryOp = 'add' | 'sub' | 'mul' | 'div';

function binary(a: RefTensor, b: RefTensor, op: BinaryOp): RefTensor {
  const device = sameDevice(op, [a, b]);
  const shape = broadcastShapes(a.shape, b.shape);
  const ia = broadcastIndex(a.shape, shape);
  const ib = broadcastIndex(b.shape, shape);
  const av = toFloat64(a.data);
  const bv = toFloat64(b.data);
  const n = ia.length;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = av[ia[i]];
    const y = bv[ib[i]];
    out[i] = op === 'add' ? x + y : op === 'sub' ? x - y : op === 'mul' ? x * y : x / y;
  }
  let dtype = promote(a.dtype, b.dtype);
  if (op === 'div') dtype = floatOf(dtype);
  return result(out, shape, dtype, device, op, [a, b], (g) => {
    const ga = a.requiresGrad ? new Float64Array(av.length) : null;
    const gb = b.requiresGrad ? new Float64Array(bv.length) : null;
    for (let i = 0; i < n; i++) {
      const x = av[ia[i]];
      const y = bv[ib[i]];
      const gi = g[i];
      if (ga) ga[ia[i]] += op === 'mul' ? gi * y : op === 'div' ? gi / y : gi;
      if (gb) gb[ib[i]] += op === 'add' ? gi : op === 'sub' ? -gi : op === 'mul' ? gi * x : (-gi * x) / (y * y);
    }
    return [ga, gb];
  });
}

function scalarResultDType(dtype: DType, s: number): DType {
  if (isFloatingDType(dtype)) return dtype;
  if (!Number.isInteger(s)) return 'float32';
  return dtype === 'bool' ? 'int64' : dtype;
}

/** `t * s` as a new tensor (differentiable). */
export function mulScalar(t: RefTensor, s: number): RefTensor {
  const tv = toFloat64(t.data);
  const out = new Float64Array(tv.length);
  for (let i = 0; i < tv.length; i++) out[i] = tv[i] * s;
  return result(out, t.shape, scalarResultDType(t.dtype, s), t.device, 'mulScalar', [t], (g) => {
    const gt = new Float64Array(g.length);
    for (let i = 0; i < g.length; i++) gt[i] = g[i] * s;
    return [gt];
  });
}

/** `t + s` as a new tensor (differentiable). */
export function addScalar(t: RefTensor, s: number): RefTensor {
  const tv = toFloat64(t.data);
  const out = new Float64Array(tv.length);
  for (let i = 0; i < tv.length; i++) out[i] = tv[i] + s;
  return result(out, t.shape, scalarResultDType(t.dtype, s), t.device, 'addScalar', [t], (g) => [g.slice()]);
}

/** Matrix product of two 2-D tensors. */
export function matmul(a: RefTensor, b: RefTensor): RefTensor {
  const device = sameDevice('matmul', [a, b]);
  if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[1] !== b.shape[0]) {
    throw new RangeError(
      `matmul: expected 2-D tensors [m, k] and [k, n], got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}.`,
    );
  }
  const [m, k] = a.shape;
  const nCols = b.shape[1];
  const av = toFloat64(a.data);
  const bv = toFloat64(b.data);
  const out = new Float64Array(m * nCols);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const x = av[i * k + p];
      for (let j = 0; j < nCols; j++) out[i * nCols + j] += x * bv[p * nCols + j];
    }
  }
  return result(out, [m, nCols], promote(a.dtype, b.dtype), device, 'matmul', [a, b], (g) => {
    let ga: Float64Array | null = null;
    let gb: Float64Array | null = null;
    if (a.requiresGrad) {
      // dA = G · Bᵀ
      ga = new Float64Array(m * k);
      for (let i = 0; i < m; i++)
        for (let p = 0; p < k; p++) {
          let s = 0;
          for (let j = 0; j < nCols; j++) s += g[i * nCols + j] * bv[p * nCols + j];
          ga[i * k + p] = s;
        }
    }
    if (b.requiresGrad) {
      // dB = Aᵀ · G
      gb = new Float64Array(k * nCols);
      for (let i = 0; i < m; i++)
        for (let p = 0; p < k; p++) {
          const x = av[i * k + p];
          for (let j = 0; j < nCols; j++) gb[p * nCols + j] += x * g[i * nCols + j];
        }
    }
    return [ga, gb];
  });
}

function transpose2d(x: RefTensor): RefTensor {
  if (x.shape.length !== 2) throw new RangeError(`t(): expected a 2-D tensor, got shape ${fmtShape(x.shape)}.`);
  const [r, c] = x.shape;
  const xv = toFloat64(x.data);
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = xv[i * c + j];
  return result(out, [c, r], x.dtype, x.device, 'transpose', [x], (g) => {
    const gx = new Float64Array(r * c);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) gx[i * c + j] = g[j * r + i];
    return [gx];
  });
}

function reshape(x: RefTensor, shape: readonly number[]): RefTensor {
  const unknown = shape.indexOf(-1);
  const target = [...shape];
  if (unknown >= 0) {
    const known = product(shape.filter((_, i) => i !== unknown));
    target[unknown] = known === 0 ? 0 : x.numel / known;
  }
  if (product(target) !== x.numel || target.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`reshape: cannot view ${x.numel} elements of shape ${fmtShape(x.shape)} as ${fmtShape(shape)}.`);
  }
  return result(toFloat64(x.data), target, x.dtype, x.device, 'reshape', [x], (g) => [g.slice()]);
}

function reduceAll(x: RefTensor, op: 'sum' | 'mean'): RefTensor {
  const xv = toFloat64(x.data);
  let s = 0;
  for (let i = 0; i < xv.length; i++) s += xv[i];
  const n = xv.length;
  const value = op === 'mean' ? s / n : s;
  const dtype = op === 'mean' ? floatOf(x.dtype) : isFloatingDType(x.dtype) ? x.dtype : 'int64';
  return result([value], [], dtype, x.device, op, [x], (g) => {
    const gx = new Float64Array(n);
    gx.fill(op === 'mean' ? g[0] / n : g[0]);
    return [gx];
  });
}

function castTo(x: RefTensor, dtype: DType): RefTensor {
  checkDType(dtype, 'to');
  if (dtype === x.dtype) return x;
  return result(toFloat64(x.data), x.shape, dtype, x.device, 'cast', [x], (g) => [g.slice()]);
}

function normDim(dim: number, ndim: number, op: string): number {
  const d = dim < 0 ? dim + ndim : dim;
  if (!Number.isInteger(d) || d < 0 || d >= ndim) {
    throw new RangeError(`${op}: dim ${dim} is out of range for a ${ndim}-D tensor (expected ${-ndim}..${ndim - 1}).`);
  }
  return d;
}

/** `length` entries of `dim` starting at `start` (a copy; differentiable). */
export function narrow(x: RefTensor, dim: number, start: number, length: number): RefTensor {
  const d = normDim(dim, x.shape.length, 'narrow');
  const size = x.shape[d];
  const s = start < 0 ? start + size : start;
  if (!Number.isInteger(s) || !Number.isInteger(length) || s < 0 || length < 0 || s + length > size) {
    throw new RangeError(
      `narrow: start ${start} + length ${length} exceeds dimension ${dim} of size ${size} (shape ${fmtShape(x.shape)}).`,
    );
  }
  const outer = product(x.shape.slice(0, d));
  const inner = product(x.shape.slice(d + 1));
  const shape = [...x.shape];
  shape[d] = length;
  const xv = toFloat64(x.data);
  const out = new Float64Array(outer * length * inner);
  for (let o = 0; o < outer; o++) {
    const src = (o * size + s) * inner;
    out.set(xv.subarray(src, src + length * inner), o * length * inner);
  }
  return result(out, shape, x.dtype, x.device, 'narrow', [x], (g) => {
    const gx = new Float64Array(xv.length);
    for (let o = 0; o < outer; o++) {
      gx.set(g.subarray(o * length * inner, (o + 1) * length * inner), (o * size + s) * inner);
    }
    return [gx];
  });
}

/** Concatenate along `dim` (differentiable). */
export function cat(tensors: readonly RefTensor[], dim: number): RefTensor {
  if (tensors.length === 0) throw new RangeError('cat: expected a non-empty list of tensors.');
  const device = sameDevice('cat', tensors);
  const first = tensors[0];
  const d = normDim(dim, first.shape.length, 'cat');
  for (const t of tensors) {
    const same =
      t.shape.length === first.shape.length && t.shape.every((s, i) => i === d || s === first.shape[i]);
    if (!same) {
      throw new RangeError(
        `cat: tensors must have the same shape except in dimension ${dim}, got ${fmtShape(first.shape)} and ${fmtShape(t.shape)}.`,
      );
    }
  }
  const outer = product(first.shape.slice(0, d));
  const inner = product(first.shape.slice(d + 1));
  const sizes = tensors.map((t) => t.shape[d]);
  const total = sizes.reduce((a, b) => a + b, 0);
  const values = tensors.map((t) => toFloat64(t.data));
  const out = new Float64Array(outer * total * inner);
  for (let o = 0; o < outer; o++) {
    let at = o * total * inner;
    for (let k = 0; k < tensors.length; k++) {
      const block = sizes[k] * inner;
      out.set(values[k].subarray(o * block, (o + 1) * block), at);
      at += block;
    }
  }
  const shape = [...first.shape];
  shape[d] = total;
  const dtype = tensors.map((t) => t.dtype).reduce(promote);
  return result(out, shape, dtype, device, 'cat', tensors, (g) => {
    const grads = tensors.map((t) => (t.requiresGrad ? new Float64Array(t.numel) : null));
    for (let o = 0; o < outer; o++) {
      let at = o * total * inner;
      for (let k = 0; k < tensors.length; k++) {
        const block = sizes[k] * inner;
        grads[k]?.set(g.subarray(at, at + block), o * block);
        at += block;
      }
    }
    return grads;
  });
}

/** A differentiable copy of `x` on `device` (the caller validates the device name). */
export function copyToDevice(x: RefTensor, device: string): RefTensor {
  return result(toFloat64(x.data), x.shape, x.dtype, device, 'toDevice', [x], (g) => [g.slice()]);
}

/** Mean squared error `mean((pred - target)^2)`; shapes must match exactly (no silent broadcasting). */
export function mseLoss(pred: RefTensor, target: RefTensor): RefTensor {
  if (pred.shape.length !== target.shape.length || pred.shape.some((s, i) => s !== target.shape[i])) {
    throw new RangeError(
      `mseLoss: prediction shape ${fmtShape(pred.shape)} differs from target shape ${fmtShape(target.shape)}; reshape one of them (e.g. target.reshape(${fmtShape(pred.shape)})).`,
    );
  }
  return pred.sub(target).square().mean();
}

// ---- factories -----------------------------------------------------------

/** Options shared by the tensor factories. */
export interface TensorOptions {
  dtype?: DType;
  device?: string;
  requiresGrad?: boolean;
}

type Nested = number | readonly Nested[];

function flatten(values: Nested, shape: number[], out: number[], depth: number): void {
  if (typeof values === 'number') {
    if (depth !== shape.length) throw new RangeError('tensor: ragged nested array; every row must have the same length.');
    out.push(values);
    return;
  }
  if (depth === shape.length) shape.push(values.length);
  else if (shape[depth] !== values.length) throw new RangeError('tensor: ragged nested array; every row must have the same length.');
  for (const v of values) flatten(v, shape, out, depth + 1);
}

/**
 * A tensor from (nested) numbers. Like `torch.tensor`: all-integer values
 * become int64, anything else float32, unless `dtype` is given.
 */
export function tensor(values: Nested, options: TensorOptions = {}): RefTensor {
  const shape: number[] = [];
  const flat: number[] = [];
  if (typeof values === 'number') flat.push(values);
  else {
    shape.push(values.length);
    for (const v of values) flatten(v, shape, flat, 1);
    if (values.length === 0) shape.splice(1);
  }
  const dtype = options.dtype ?? (flat.length > 0 && flat.every(Number.isInteger) ? 'int64' : 'float32');
  checkDType(dtype, 'tensor');
  return new RefTensor(castValues(flat, dtype), shape, dtype, options.device ?? 'cpu', options.requiresGrad ?? false);
}

/** A tensor of `shape` filled with `value` (default dtype float32). */
export function full(shape: readonly number[], value: number, options: TensorOptions = {}): RefTensor {
  const dtype = options.dtype ?? 'float32';
  checkDType(dtype, 'full');
  const values = new Float64Array(product(shape)).fill(value);
  return new RefTensor(castValues(values, dtype), shape, dtype, options.device ?? 'cpu', options.requiresGrad ?? false);
}

/** Zeros of `shape` (default float32). */
export function zeros(shape: readonly number[], options: TensorOptions = {}): RefTensor {
  return full(shape, 0, options);
}

/** Standard normal samples from `generator` (default: the backend's default generator). */
export function randn(shape: readonly number[], options: TensorOptions & { generator?: SeededRandom } = {}): RefTensor {
  const g = options.generator ?? defaultGenerator;
  const values = new Float64Array(product(shape));
  for (let i = 0; i < values.length; i++) values[i] = g.normal();
  const dtype = options.dtype ?? 'float32';
  return new RefTensor(castValues(values, dtype), shape, dtype, options.device ?? 'cpu', options.requiresGrad ?? false);
}

/** Uniform samples in [low, high) from `generator` (default: the backend's default generator). */
export function rand(
  shape: readonly number[],
  options: TensorOptions & { low?: number; high?: number; generator?: SeededRandom } = {},
): RefTensor {
  const g = options.generator ?? defaultGenerator;
  const values = new Float64Array(product(shape));
  for (let i = 0; i < values.length; i++) values[i] = g.uniform(options.low ?? 0, options.high ?? 1);
  const dtype = options.dtype ?? 'float32';
  return new RefTensor(castValues(values, dtype), shape, dtype, options.device ?? 'cpu', options.requiresGrad ?? false);
}

/** A reference tensor holding a copy of `h`. */
export function fromHostTensor(h: HostTensor, device = 'cpu'): RefTensor {
  checkDType(h.dtype, 'fromHost');
  return new RefTensor(h.data.slice() as HostArray, h.shape, h.dtype, device);
}

/** A tensor of `shape` filled with `value`, with `like`'s dtype and device. */
export function fullLike(like: RefTensor, shape: readonly number[], value: number): RefTensor {
  return full(shape, value, { dtype: like.dtype, device: like.device });
}

/** Overwrite `target`'s elements with `values` (cast to its dtype), outside autograd. */
export function assignValues(target: RefTensor, values: ArrayLike<number>): void {
  if (values.length !== target.numel) {
    throw new RangeError(`assign: ${values.length} values for a tensor of ${target.numel} elements (shape ${fmtShape(target.shape)}).`);
  }
  // Write into the existing storage so that detached views (state dicts) see the update, as in PyTorch.
  const data = target.data;
  if (data instanceof Float32Array || data instanceof Float64Array) data.set(values);
  else (data as unknown as { set(a: ArrayLike<unknown>): void }).set(castValues(values, target.dtype));
}

/** Cast a tensor's storage to `dtype` in place (used to cast model parameters). */
export function castInPlace(target: RefTensor, dtype: DType): void {
  checkDType(dtype, 'cast');
  if (target.dtype === dtype) return;
  target.data = castValues(toFloat64(target.data), dtype);
  target.dtype = dtype;
}

/** Elements of `t` as float64 (a copy). */
export function valuesOf(t: RefTensor): Float64Array {
  return toFloat64(t.data);
}

// ---- backward ------------------------------------------------------------

/**
 * Backpropagate from a one-element `root`, seeding its gradient with
 * `upstream`, and accumulate into the `grad` of every leaf that requires
 * grad. The graph is released afterwards: a second backward through it
 * throws, as in PyTorch without `retain_graph`.
 */
export function runBackward(root: RefTensor, upstream = 1): void {
  if (!(root instanceof RefTensor)) {
    throw new TypeError(`backward: expected a reference-backend tensor as the loss, got ${typeof root}.`);
  }
  if (root.numel !== 1) {
    throw new RangeError(
      `backward: the loss must have exactly one element, got shape ${fmtShape(root.shape)}. Reduce it first (loss.mean() or loss.sum()).`,
    );
  }
  if (!root.requiresGrad) {
    throw new Error(
      'backward: the loss does not require grad. It was computed under noGrad(), or from tensors none of which is a parameter (requiresGrad = true).',
    );
  }
  // Iterative post-order DFS: inputs before the tensors computed from them.
  const order: RefTensor[] = [];
  const visited = new Set<RefTensor>();
  const stack: Array<[RefTensor, number]> = [[root, 0]];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const node = t.node;
    if (node?.released) {
      throw new Error(
        `backward: trying to backward through the graph a second time (through '${node.op}'); its intermediate values were freed by the first backward. Recompute the loss, or call backward once on a sum of the losses.`,
      );
    }
    if (node && i < node.inputs.length) {
      top[1]++;
      const input = node.inputs[i];
      if (input.requiresGrad && !visited.has(input)) {
        visited.add(input);
        stack.push([input, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  const grads = new Map<RefTensor, Float64Array>();
  grads.set(root, Float64Array.of(upstream));
  for (let k = order.length - 1; k >= 0; k--) {
    const t = order[k];
    const g = grads.get(t);
    if (!g) continue;
    grads.delete(t);
    if (t.node) {
      const inputGrads = t.node.backward(g);
      t.node.inputs.forEach((input, j) => {
        const gi = inputGrads[j];
        if (!gi || !input.requiresGrad) return;
        const prev = grads.get(input);
        if (prev) for (let e = 0; e < gi.length; e++) prev[e] += gi[e];
        else grads.set(input, gi);
      });
    } else if (t.requiresGrad) {
      accumulateGrad(t, g);
    }
  }
  for (const t of order) if (t.node) t.node.released = true;
}

function accumulateGrad(leaf: RefTensor, g: Float64Array): void {
  if (leaf.grad === null) {
    leaf.grad = new RefTensor(castValues(g, leaf.dtype), leaf.shape, leaf.dtype, leaf.device);
    return;
  }
  const prev = toFloat64(leaf.grad.data);
  for (let i = 0; i < g.length; i++) prev[i] += g[i];
  assignValues(leaf.grad, prev);
}
