/**
 * `Tensor`: a PyTorch-like tensor over libtorch, plus creation functions, memory
 * scopes (`tidy`, `keep`, `dispose`) and grad-mode helpers (`noGrad`).
 * @module
 */
import { collateBatch, dtypeOfHostArray, hostArrayConstructor, type DType as CoreDType, type HostArray, type SelfCollating } from '@accelerate/core';
import { native, opId, type NativeArg, type NativeHandle } from './native.js';

/** Element types, named as in PyTorch (`torch.float32` -> `'float32'`); core's {@link CoreDType}. */
export type DType = CoreDType;

/** Nested arrays of numbers/booleans, as accepted by {@link tensor}. */
export type NestedArray = number | boolean | bigint | NestedArray[];

/** Typed arrays a tensor can be created from or copied to. */
export type TypedArray = HostArray;

/** Options of the creation functions. */
export interface TensorOptions {
  dtype?: DType;
  /** `cpu` (default) or `cuda:N`. */
  device?: string;
  requiresGrad?: boolean;
}

/** A slice in {@link Tensor.index}: `{ start, stop, step }` or a string like `'1:5:2'`, `':'`, `'...'`. */
export type IndexItem = number | null | string | { start?: number; stop?: number; step?: number } | Tensor;

// ---- memory scopes ------------------------------------------------------------

const scopes: Array<Set<Tensor>> = [];

function track(t: Tensor): void {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
}

/** Walk a value and call `f` on every Tensor inside (arrays, plain objects, Maps). */
export function forEachTensor(value: unknown, f: (t: Tensor) => void, seen = new Set<unknown>()): void {
  if (value instanceof Tensor) return f(value);
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) for (const v of value) forEachTensor(v, f, seen);
  else if (value instanceof Map) for (const v of value.values()) forEachTensor(v, f, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) forEachTensor(v, f, seen);
}

/**
 * Run `fn` and free every tensor created inside it except those it returns
 * (anywhere in the returned arrays/objects) and those passed to {@link keep}.
 * Returned tensors belong to the enclosing scope. `fn` must be synchronous.
 */
export function tidy<R>(fn: () => R): R {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new TypeError('tidy(fn): fn returned a Promise; tidy only scopes synchronous code. Use it inside the async function, around the synchronous part.');
  }
  const kept = new Set<Tensor>();
  forEachTensor(result, (t) => kept.add(t));
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (kept.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/**
 * Run `fn` outside every {@link tidy} scope: tensors it creates belong to no
 * scope (they live until disposed or collected). Hooks run this way — a
 * gradient hook fired inside a checkpoint recomputation, or a forward hook of
 * a module called inside a user's `tidy`, allocates buffers that must outlive
 * the scope it happens to run in.
 */
export function untracked<R>(fn: () => R): R {
  const saved = scopes.splice(0);
  try {
    return fn();
  } finally {
    scopes.push(...saved);
  }
}

/** Exclude `t` from every enclosing {@link tidy} scope (it lives until disposed or collected). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

/** Dispose every tensor in `value` (a tensor, or arrays/objects of tensors). */
export function dispose(value: unknown): void {
  forEachTensor(value, (t) => t.dispose());
}

/** Live native tensor handles and bytes reported to V8 (for leak checks). */
export function memoryStats(): { liveHandles: number; bytes: number } {
  const s = native.handleStats();
  return { liveHandles: s.live, bytes: s.accountedBytes };
}

// ---- grad mode -------------------------------------------------------------------

function withGradMode<R>(enabled: boolean, fn: () => R): R {
  const prev = native.setGradEnabled(enabled);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    native.setGradEnabled(prev);
    throw e;
  }
  if (result instanceof Promise) {
    // Grad mode is process-wide: it stays set until the promise settles.
    return result.finally(() => native.setGradEnabled(prev)) as R;
  }
  native.setGradEnabled(prev);
  return result;
}

/** Run `fn` without recording autograd history (`with torch.no_grad():`). */
export function noGrad<R>(fn: () => R): R {
  return withGradMode(false, fn);
}

/** Run `fn` with autograd recording on (`with torch.enable_grad():`). */
export function enableGrad<R>(fn: () => R): R {
  return withGradMode(true, fn);
}

/** Whether autograd records operations now. */
export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/** A registered hook; `remove()` unregisters it (idempotent). */
export interface RemovableHook {
  remove(): void;
}

const gradHookNative = native as unknown as { addGradReadyHook(param: NativeHandle, fn: () => void): () => void };

/**
 * Call `fn(param)` each time backward has accumulated a gradient into `param.grad`
 * (PyTorch's `Tensor.register_post_accumulate_grad_hook`): once per backward and
 * parameter, after the gradients of all of the parameter's uses in the graph were summed
 * and added to `param.grad`, so `fn` sees the full gradient of that backward (plus what
 * was accumulated before it). Parameters become ready in the order backward reaches them,
 * roughly reverse to the forward. This is the point where a data-parallel strategy can
 * start communicating a gradient while backward continues. Under `wrapDistributed`
 * `fn` sees this rank's gradient: DDP averages the buckets later in the same backward.
 *
 * `param` must be a leaf that requires grad. `fn` runs on the JS thread: CPU backward runs
 * its nodes on the thread that called `backward()`, and `fn` is called right there. When
 * the autograd engine accumulates on another thread (CUDA device threads), the call is
 * queued and run on the JS thread after the engine finished, before `backward()` returns,
 * in the order the gradients became ready. If `fn` throws, backward stops and `backward()`
 * throws an Error whose `cause` is `fn`'s error; gradients may then be partly accumulated.
 * Uses libtorch's post-accumulate-grad hook where it exists (2.1+), and a post hook on the
 * parameter's gradient accumulator on 1.13. A registered hook keeps `param` alive until
 * `remove()`.
 */
export function addGradientReadyHook<T extends Tensor>(param: T, fn: (param: T) => void): RemovableHook {
  if (!(param instanceof Tensor)) throw new TypeError('addGradientReadyHook: expected a Tensor');
  if (typeof fn !== 'function') throw new TypeError('addGradientReadyHook: expected a function');
  const remove = gradHookNative.addGradReadyHook(param._h, () => untracked(() => fn(param)));
  let removed = false;
  return {
    remove(): void {
      if (removed) return;
      removed = true;
      remove();
    },
  };
}

// ---- helpers ----------------------------------------------------------------------

/** An operand: a tensor or a scalar. */
export type Arg = Tensor | number | boolean;
const h = (x: Arg | null | undefined): NativeArg => (x instanceof Tensor ? x._h : x);
const hs = (xs: readonly Tensor[]): NativeHandle[] => xs.map((t) => t._h);

/** Call an ATen operator with native handles as arguments (the fast path behind every method). @internal */
export function callOpHandles(name: string, overload: string, ...args: NativeArg[]): any {
  return wrapResult(native.op(opId(name, overload), ...args));
}

/**
 * An argument of {@link callOp}, converted by the operator's schema: a {@link Tensor}
 * (a number or boolean where a Tensor is expected acts as a Python number), an int,
 * float, bool, Scalar, string, dtype name (`'float32'`), device name, null for an
 * optional argument, or an array for list arguments (`int[]`, `Tensor[]`, `Tensor?[]`).
 */
export type OpArg = Tensor | number | boolean | string | bigint | null | undefined | readonly OpArg[];

const unwrapArg = (a: OpArg): NativeArg => (a instanceof Tensor ? a._h : Array.isArray(a) ? a.map(unwrapArg) : (a as NativeArg));

/**
 * Call any ATen operator by schema name and overload name, e.g.
 * `torch.callOp('aten::add', 'Tensor', a, b, 1)` or `callOp('addmm', '', bias, x, w)`
 * (the `aten::` prefix is optional; `''` is the default overload). Arguments are
 * positional as in the schema; missing trailing ones take the schema's defaults.
 * Tensor results come back as {@link Tensor}s (tracked by the current {@link tidy}
 * scope), several results as an array, others as JS values.
 */
export function callOp(name: string, overload: string, ...args: OpArg[]): any {
  return wrapResult(native.op(opId(name, overload), ...args.map(unwrapArg)));
}

function wrapResult(r: any): any {
  if (r === null || r === undefined || typeof r !== 'object') return r;
  if (Array.isArray(r)) return r.map(wrapResult);
  return new Tensor(r as NativeHandle);
}

const t1 = (name: string, overload: string, ...args: NativeArg[]): Tensor => callOpHandles(name, overload, ...args) as Tensor;

function dimsOf(dims: number[] | [number[]]): number[] {
  return Array.isArray(dims[0]) ? (dims[0] as number[]) : (dims as number[]);
}

// ---- Tensor -----------------------------------------------------------------------

/**
 * An n-dimensional array on a device, with autograd. Methods follow PyTorch's
 * names in camelCase; in-place variants end in `_` and return `this`.
 * Memory is freed by {@link Tensor.dispose}, by a {@link tidy} scope, or by GC.
 */
export class Tensor implements SelfCollating<Tensor> {
  /** @internal native handle */
  readonly _h: NativeHandle;

  /** @internal wrap a native handle; tracked by the current {@link tidy} scope. */
  constructor(handle: NativeHandle) {
    this._h = handle;
    track(this);
  }

  // ---- metadata ----
  /** Size of each dimension. */
  get shape(): number[] {
    return native.shape(this._h);
  }
  /** Same as {@link shape} (`tensor.size()` in PyTorch). */
  size(dim?: number): any {
    const s = this.shape;
    if (dim === undefined) return s;
    return s[dim < 0 ? dim + s.length : dim];
  }
  get dtype(): DType {
    return native.dtype(this._h) as DType;
  }
  /** Device name, e.g. `cpu`, `cuda:0`. */
  get device(): string {
    return native.device(this._h);
  }
  get ndim(): number {
    return native.dim(this._h);
  }
  dim(): number {
    return native.dim(this._h);
  }
  numel(): number {
    return native.numel(this._h);
  }
  stride(): number[] {
    return native.strides(this._h);
  }
  isContiguous(): boolean {
    return native.isContiguous(this._h);
  }
  /** True once {@link dispose} ran (or a scope freed it). */
  get isDisposed(): boolean {
    return this._h.isDisposed();
  }
  /** Drop this handle's reference to the tensor (storage is freed once nothing else uses it). */
  dispose(): void {
    this._h.dispose();
  }

  // ---- autograd ----
  get requiresGrad(): boolean {
    return native.requiresGrad(this._h);
  }
  set requiresGrad(v: boolean) {
    native.setRequiresGrad(this._h, v);
  }
  /** Set requires_grad in place; returns this. */
  requiresGrad_(v = true): this {
    native.setRequiresGrad(this._h, v);
    return this;
  }
  /** Accumulated gradient, or null. */
  get grad(): Tensor | null {
    const g = native.grad(this._h);
    return g ? new Tensor(g) : null;
  }
  set grad(g: Tensor | null) {
    native.setGrad(this._h, g ? g._h : null);
  }
  get isLeaf(): boolean {
    return native.isLeaf(this._h);
  }
  /** Name of the autograd node that produced this tensor, e.g. `AddmmBackward0`. */
  get gradFn(): string | null {
    return native.gradFnName(this._h);
  }
  retainGrad(): void {
    native.retainGrad(this._h);
  }
  /** Backpropagate from this tensor (a scalar unless `gradient` is given). */
  backward(gradient?: Tensor, options: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    native.backward(this._h, gradient ? gradient._h : null, options.retainGraph, options.createGraph);
  }
  /** A tensor sharing storage, cut from the autograd graph. */
  detach(): Tensor {
    return t1('detach', '', this._h);
  }
  detach_(): this {
    callOpHandles('detach_', '', this._h);
    return this;
  }

  // ---- conversion ----
  /** Copy the elements into a typed array (float16/bfloat16 as raw Uint16 bits, bool as Uint8). */
  dataSync(): TypedArray {
    const buf = native.toBuffer(this._h);
    return typedView(buf, this.dtype);
  }
  /** Same as {@link dataSync}. */
  toTypedArray(): TypedArray {
    return this.dataSync();
  }
  /** Zero-copy view of a contiguous CPU tensor's memory (changes when the tensor changes). */
  sharedData(): TypedArray {
    return typedView(native.shareBuffer(this._h), this.dtype);
  }
  /** Elements as nested JS arrays (int64 as numbers). */
  tolist(): NestedArray {
    const flat = Array.from(this.dataSync() as ArrayLike<number | bigint>, (v) =>
      typeof v === 'bigint' ? Number(v) : this.dtype === 'bool' ? v !== 0 : v,
    ) as Array<number | boolean>;
    const shape = this.shape;
    if (this.dtype === 'float16' || this.dtype === 'bfloat16') return this.float().tolist();
    if (shape.length === 0) return flat[0] as number;
    let i = 0;
    const build = (d: number): NestedArray => {
      const out: NestedArray[] = [];
      for (let k = 0; k < shape[d]; k++) out.push(d === shape.length - 1 ? (flat[i++] as number) : build(d + 1));
      return out;
    };
    return build(0);
  }
  /** Same as {@link tolist}. */
  arraySync(): NestedArray {
    return this.tolist();
  }
  /** The value of a one-element tensor. */
  item(): number {
    return native.item(this._h) as number;
  }
  /** Cast and/or move: `to('cuda:0')`, `to('float16')`, `to({ device, dtype })`. */
  to(target: string | { device?: string; dtype?: DType; copy?: boolean }): Tensor {
    const isDType = (s: string) => DTYPES.has(s);
    const o = typeof target === 'string' ? (isDType(target) ? { dtype: target as DType } : { device: target }) : target;
    if (o.device !== undefined) return t1('to', 'device', this._h, o.device, o.dtype ?? this.dtype, false, o.copy ?? false);
    return t1('to', 'dtype', this._h, o.dtype ?? this.dtype, false, o.copy ?? false);
  }
  float(): Tensor {
    return this.to('float32');
  }
  double(): Tensor {
    return this.to('float64');
  }
  half(): Tensor {
    return this.to('float16');
  }
  bfloat16(): Tensor {
    return this.to('bfloat16');
  }
  long(): Tensor {
    return this.to('int64');
  }
  int(): Tensor {
    return this.to('int32');
  }
  bool(): Tensor {
    return this.to('bool');
  }
  cpu(): Tensor {
    return this.to({ device: 'cpu' });
  }
  cuda(index = 0): Tensor {
    return this.to({ device: `cuda:${index}` });
  }
  clone(): Tensor {
    return t1('clone', '', this._h);
  }
  contiguous(): Tensor {
    return t1('contiguous', '', this._h);
  }
  /** A new handle to the same tensor (lets a tensor outlive a scope that disposes the original handle). */
  ref(): Tensor {
    return new Tensor(native.newRef(this._h));
  }
  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // ---- arithmetic ----
  add(other: Arg, alpha = 1): Tensor {
    return t1('add', 'Tensor', this._h, h(other), alpha);
  }
  sub(other: Arg, alpha = 1): Tensor {
    return t1('sub', 'Tensor', this._h, h(other), alpha);
  }
  mul(other: Arg): Tensor {
    return t1('mul', 'Tensor', this._h, h(other));
  }
  div(other: Arg, roundingMode?: 'trunc' | 'floor'): Tensor {
    return roundingMode ? t1('div', 'Tensor_mode', this._h, h(other), roundingMode) : t1('div', 'Tensor', this._h, h(other));
  }
  pow(exponent: Arg): Tensor {
    return exponent instanceof Tensor ? t1('pow', 'Tensor_Tensor', this._h, exponent._h) : t1('pow', 'Tensor_Scalar', this._h, exponent);
  }
  remainder(other: Arg): Tensor {
    return t1('remainder', 'Tensor', this._h, h(other));
  }
  neg(): Tensor {
    return t1('neg', '', this._h);
  }
  abs(): Tensor {
    return t1('abs', '', this._h);
  }
  exp(): Tensor {
    return t1('exp', '', this._h);
  }
  log(): Tensor {
    return t1('log', '', this._h);
  }
  log1p(): Tensor {
    return t1('log1p', '', this._h);
  }
  sqrt(): Tensor {
    return t1('sqrt', '', this._h);
  }
  rsqrt(): Tensor {
    return t1('rsqrt', '', this._h);
  }
  square(): Tensor {
    return t1('square', '', this._h);
  }
  sin(): Tensor {
    return t1('sin', '', this._h);
  }
  cos(): Tensor {
    return t1('cos', '', this._h);
  }
  tanh(): Tensor {
    return t1('tanh', '', this._h);
  }
  sigmoid(): Tensor {
    return t1('sigmoid', '', this._h);
  }
  relu(): Tensor {
    return t1('relu', '', this._h);
  }
  floor(): Tensor {
    return t1('floor', '', this._h);
  }
  ceil(): Tensor {
    return t1('ceil', '', this._h);
  }
  round(): Tensor {
    return t1('round', '', this._h);
  }
  sign(): Tensor {
    return t1('sign', '', this._h);
  }
  reciprocal(): Tensor {
    return t1('reciprocal', '', this._h);
  }
  clamp(min?: number | null, max?: number | null): Tensor {
    return t1('clamp', '', this._h, min ?? null, max ?? null);
  }
  matmul(other: Tensor): Tensor {
    return t1('matmul', '', this._h, other._h);
  }
  mm(other: Tensor): Tensor {
    return t1('mm', '', this._h, other._h);
  }
  bmm(other: Tensor): Tensor {
    return t1('bmm', '', this._h, other._h);
  }
  dot(other: Tensor): Tensor {
    return t1('dot', '', this._h, other._h);
  }
  maximum(other: Tensor): Tensor {
    return t1('maximum', '', this._h, other._h);
  }
  minimum(other: Tensor): Tensor {
    return t1('minimum', '', this._h, other._h);
  }
  lerp(end: Tensor, weight: number | Tensor): Tensor {
    return weight instanceof Tensor ? t1('lerp', 'Tensor', this._h, end._h, weight._h) : t1('lerp', 'Scalar', this._h, end._h, weight);
  }

  // ---- in place ----
  add_(other: Arg, alpha = 1): this {
    callOpHandles('add_', 'Tensor', this._h, h(other), alpha);
    return this;
  }
  sub_(other: Arg, alpha = 1): this {
    callOpHandles('sub_', 'Tensor', this._h, h(other), alpha);
    return this;
  }
  mul_(other: Arg): this {
    callOpHandles('mul_', 'Tensor', this._h, h(other));
    return this;
  }
  div_(other: Arg): this {
    callOpHandles('div_', 'Tensor', this._h, h(other));
    return this;
  }
  pow_(exponent: number): this {
    callOpHandles('pow_', 'Scalar', this._h, exponent);
    return this;
  }
  clamp_(min?: number | null, max?: number | null): this {
    callOpHandles('clamp_', '', this._h, min ?? null, max ?? null);
    return this;
  }
  relu_(): this {
    callOpHandles('relu_', '', this._h);
    return this;
  }
  neg_(): this {
    callOpHandles('neg_', '', this._h);
    return this;
  }
  zero_(): this {
    callOpHandles('zero_', '', this._h);
    return this;
  }
  fill_(value: number): this {
    callOpHandles('fill_', 'Scalar', this._h, value);
    return this;
  }
  copy_(src: Tensor): this {
    callOpHandles('copy_', '', this._h, src._h, false);
    return this;
  }
  uniform_(low = 0, high = 1): this {
    callOpHandles('uniform_', '', this._h, low, high);
    return this;
  }
  normal_(mean = 0, std = 1): this {
    callOpHandles('normal_', '', this._h, mean, std);
    return this;
  }
  addcmul_(t1_: Tensor, t2: Tensor, value = 1): this {
    callOpHandles('addcmul_', '', this._h, t1_._h, t2._h, value);
    return this;
  }
  addcdiv_(t1_: Tensor, t2: Tensor, value = 1): this {
    callOpHandles('addcdiv_', '', this._h, t1_._h, t2._h, value);
    return this;
  }

  // ---- comparisons ----
  eq(other: Arg): Tensor {
    return t1('eq', 'Tensor', this._h, h(other));
  }
  ne(other: Arg): Tensor {
    return t1('ne', 'Tensor', this._h, h(other));
  }
  lt(other: Arg): Tensor {
    return t1('lt', 'Tensor', this._h, h(other));
  }
  le(other: Arg): Tensor {
    return t1('le', 'Tensor', this._h, h(other));
  }
  gt(other: Arg): Tensor {
    return t1('gt', 'Tensor', this._h, h(other));
  }
  ge(other: Arg): Tensor {
    return t1('ge', 'Tensor', this._h, h(other));
  }
  logicalNot(): Tensor {
    return t1('logical_not', '', this._h);
  }
  logicalAnd(other: Tensor): Tensor {
    return t1('logical_and', '', this._h, other._h);
  }
  logicalOr(other: Tensor): Tensor {
    return t1('logical_or', '', this._h, other._h);
  }
  isnan(): Tensor {
    return t1('isnan', '', this._h);
  }
  isfinite(): Tensor {
    return t1('isfinite', '', this._h);
  }
  /** Elementwise closeness as torch.allclose. */
  allclose(other: Tensor, rtol = 1e-5, atol = 1e-8): boolean {
    return callOpHandles('allclose', '', this._h, other._h, rtol, atol, false) as boolean;
  }
  equal(other: Tensor): boolean {
    return callOpHandles('equal', '', this._h, other._h) as boolean;
  }
  /** `where(cond, this, other)`: elements of this where `cond`, else `other`. */
  maskedFill(mask: Tensor, value: number): Tensor {
    return t1('masked_fill', 'Scalar', this._h, mask._h, value);
  }

  // ---- reductions ----
  sum(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    if (dim === undefined) return t1('sum', '', this._h, dtype ?? null);
    return t1('sum', 'dim_IntList', this._h, typeof dim === 'number' ? [dim] : dim, keepdim, dtype ?? null);
  }
  mean(dim?: number | number[], keepdim = false): Tensor {
    if (dim === undefined) return t1('mean', '', this._h);
    return t1('mean', 'dim', this._h, typeof dim === 'number' ? [dim] : dim, keepdim);
  }
  prod(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? t1('prod', '', this._h) : t1('prod', 'dim_int', this._h, dim, keepdim);
  }
  /** Variance (Bessel-corrected unless `unbiased` is false). */
  var(dim?: number | number[], unbiased = true, keepdim = false): Tensor {
    return dim === undefined ? t1('var', '', this._h, unbiased) : t1('var', 'dim', this._h, typeof dim === 'number' ? [dim] : dim, unbiased, keepdim);
  }
  std(dim?: number | number[], unbiased = true, keepdim = false): Tensor {
    return dim === undefined ? t1('std', '', this._h, unbiased) : t1('std', 'dim', this._h, typeof dim === 'number' ? [dim] : dim, unbiased, keepdim);
  }
  /** Max of all elements, or `[values, indices]` along `dim`. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): [Tensor, Tensor];
  max(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    return dim === undefined ? t1('max', '', this._h) : callOpHandles('max', 'dim', this._h, dim, keepdim);
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): [Tensor, Tensor];
  min(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    return dim === undefined ? t1('min', '', this._h) : callOpHandles('min', 'dim', this._h, dim, keepdim);
  }
  amax(dim: number | number[] = [], keepdim = false): Tensor {
    return t1('amax', '', this._h, typeof dim === 'number' ? [dim] : dim, keepdim);
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return t1('argmax', '', this._h, dim ?? null, keepdim);
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return t1('argmin', '', this._h, dim ?? null, keepdim);
  }
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return t1('linalg_vector_norm', '', this._h, p, dim === undefined ? null : typeof dim === 'number' ? [dim] : dim, keepdim);
  }
  all(): Tensor {
    return t1('all', '', this._h);
  }
  any(): Tensor {
    return t1('any', '', this._h);
  }
  cumsum(dim: number): Tensor {
    return t1('cumsum', '', this._h, dim);
  }
  softmax(dim: number): Tensor {
    return t1('softmax', 'int', this._h, dim);
  }
  logSoftmax(dim: number): Tensor {
    return t1('log_softmax', 'int', this._h, dim);
  }
  /** `[values, indices]` of the k largest along `dim`. */
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    return callOpHandles('topk', '', this._h, k, dim, largest, sorted);
  }
  sort(dim = -1, descending = false): [Tensor, Tensor] {
    return callOpHandles('sort', '', this._h, dim, descending);
  }

  // ---- shape ----
  reshape(...shape: number[] | [number[]]): Tensor {
    return t1('reshape', '', this._h, dimsOf(shape));
  }
  view(...shape: number[] | [number[]]): Tensor {
    return t1('view', '', this._h, dimsOf(shape));
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    return t1('flatten', 'using_ints', this._h, startDim, endDim);
  }
  permute(...dims: number[] | [number[]]): Tensor {
    return t1('permute', '', this._h, dimsOf(dims));
  }
  transpose(dim0: number, dim1: number): Tensor {
    return t1('transpose', 'int', this._h, dim0, dim1);
  }
  /** Transpose of a 2-D tensor (`tensor.T`). */
  get T(): Tensor {
    return t1('numpy_T', '', this._h);
  }
  t(): Tensor {
    return t1('t', '', this._h);
  }
  squeeze(dim?: number): Tensor {
    return dim === undefined ? t1('squeeze', '', this._h) : t1('squeeze', 'dim', this._h, dim);
  }
  unsqueeze(dim: number): Tensor {
    return t1('unsqueeze', '', this._h, dim);
  }
  expand(...shape: number[] | [number[]]): Tensor {
    return t1('expand', '', this._h, dimsOf(shape), false);
  }
  expandAs(other: Tensor): Tensor {
    return t1('expand_as', '', this._h, other._h);
  }
  repeat(...sizes: number[] | [number[]]): Tensor {
    return t1('repeat', '', this._h, dimsOf(sizes));
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return t1('narrow', '', this._h, dim, start, length);
  }
  select(dim: number, index: number): Tensor {
    return t1('select', 'int', this._h, dim, index);
  }
  split(splitSize: number | number[], dim = 0): Tensor[] {
    return typeof splitSize === 'number'
      ? callOpHandles('split', 'Tensor', this._h, splitSize, dim)
      : callOpHandles('split_with_sizes', '', this._h, splitSize, dim);
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return callOpHandles('chunk', '', this._h, chunks, dim);
  }
  gather(dim: number, index: Tensor): Tensor {
    return t1('gather', '', this._h, dim, index._h, false);
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return t1('index_select', '', this._h, dim, index._h);
  }
  /**
   * Python-style indexing: `t.index(0, ':', '1:3', null, '...', idxTensor)` is
   * `t[0, :, 1:3, None, ..., idx]`. Numbers select, strings slice, null adds a dim,
   * tensors index (advanced indexing).
   */
  index(...items: IndexItem[]): Tensor {
    let out: Tensor = this;
    let dim = 0;
    const tensorIdx: Array<Tensor | null> = [];
    let advanced = false;
    const consumes = (x: IndexItem) => x !== null && x !== '...';
    const ellipsisDims = this.ndim - items.filter(consumes).length;
    const created: Tensor[] = [];
    const step = (t: Tensor) => {
      if (out !== this) created.push(out);
      out = t;
    };
    for (const it of items) {
      if (it === '...') {
        for (let k = 0; k < ellipsisDims; k++) tensorIdx.push(null);
        dim += ellipsisDims;
      } else if (it === null) {
        step(out.unsqueeze(dim));
        tensorIdx.push(null);
        dim++;
      } else if (typeof it === 'number') {
        step(out.select(dim, it));
      } else if (it instanceof Tensor) {
        tensorIdx.push(it);
        advanced = true;
        dim++;
      } else {
        const s = typeof it === 'string' ? parseSlice(it) : it;
        step(t1('slice', 'Tensor', out._h, dim, s.start ?? null, s.stop ?? null, s.step ?? 1));
        tensorIdx.push(null);
        dim++;
      }
    }
    if (advanced) step(t1('index', 'Tensor', out._h, tensorIdx.map((t) => (t ? t._h : null))));
    for (const c of created) if (c !== out) c.dispose();
    return out;
  }

  // ---- data loading ----
  /**
   * How `defaultCollate` of `@accelerate/core` batches samples that are Tensors:
   * stacked along a new first dimension (`torch.stack`, as PyTorch's default_collate),
   * so a DataLoader over a dataset of Tensors yields `[B, ...]` Tensors.
   */
  [collateBatch](samples: readonly unknown[], where: string): Tensor {
    samples.forEach((s, i) => {
      if (!(s instanceof Tensor)) {
        throw new TypeError(`defaultCollate: at ${where}, sample 0 is a Tensor but sample ${i} is ${s === null ? 'null' : typeof s === 'object' ? (s.constructor?.name ?? 'object') : typeof s}. Give every sample the same structure, or pass a collateFn.`);
      }
    });
    try {
      return stack(samples as Tensor[]);
    } catch (e) {
      throw new RangeError(`defaultCollate: at ${where}, the samples' Tensors cannot be stacked into a batch (${(e as Error).message}). Pad samples to one shape, or pass a collateFn.`);
    }
  }

  // ---- misc ----
  masked(mask: Tensor): Tensor {
    return t1('masked_select', '', this._h, mask._h);
  }
  oneHot(numClasses = -1): Tensor {
    return t1('one_hot', '', this._h, numClasses);
  }
  nonzero(): Tensor {
    return t1('nonzero', '', this._h);
  }
}

const DTYPES = new Set<string>(['float32', 'float64', 'float16', 'bfloat16', 'int8', 'int16', 'int32', 'int64', 'uint8', 'bool']);

function parseSlice(s: string): { start?: number; stop?: number; step?: number } {
  const parts = s.split(':');
  if (parts.length < 2 || parts.length > 3) throw new TypeError(`index: '${s}' is not a slice; use 'start:stop' or 'start:stop:step'`);
  const num = (p: string | undefined) => (p === undefined || p.trim() === '' ? undefined : Number(p));
  return { start: num(parts[0]), stop: num(parts[1]), step: num(parts[2]) };
}

function typedView(buf: ArrayBuffer, dtype: DType): TypedArray {
  return new (hostArrayConstructor(dtype))(buf) as TypedArray;
}

function finish(t: Tensor, o: TensorOptions | undefined): Tensor {
  if (o?.requiresGrad) native.setRequiresGrad(t._h, true);
  return t;
}

// ---- creation ---------------------------------------------------------------------

/**
 * A tensor from data: a typed array (its dtype unless `dtype` is given), nested
 * arrays or a number. JS numbers carry no int/float distinction, so numbers become
 * float32 unless `dtype` says otherwise (PyTorch infers int64 from Python ints);
 * booleans become bool and bigints int64.
 */
export function tensor(data: NestedArray | TypedArray, options: TensorOptions & { shape?: number[] } = {}): Tensor {
  let flat: TypedArray;
  let shape: number[];
  let dtype: DType;
  if (ArrayBuffer.isView(data)) {
    flat = data as TypedArray;
    shape = options.shape ?? [flat.length];
    dtype = dtypeOfHostArray(flat);
  } else {
    shape = [];
    let probe: NestedArray = data;
    while (Array.isArray(probe)) {
      shape.push(probe.length);
      probe = probe[0] as NestedArray;
    }
    const values = Array.isArray(data) ? (data as unknown[]).flat(Infinity as 1) : [data];
    const numel = shape.reduce((a, b) => a * b, 1);
    if (values.length !== numel) throw new RangeError(`tensor(): nested arrays are ragged (shape [${shape.join(', ')}] needs ${numel} elements, found ${values.length})`);
    if (options.shape) shape = options.shape;
    const first = values[0];
    if (typeof first === 'boolean') {
      dtype = 'bool';
      flat = Uint8Array.from(values as boolean[], (v) => (v ? 1 : 0));
    } else if (typeof first === 'bigint') {
      dtype = 'int64';
      flat = BigInt64Array.from(values as bigint[]);
    } else {
      dtype = 'float32';
      flat = Float32Array.from(values as number[]);
      if (options.dtype === 'float64') {
        flat = Float64Array.from(values as number[]);
        dtype = 'float64';
      }
    }
  }
  let t = new Tensor(native.fromBuffer(flat, shape, dtype));
  const want = options.dtype ?? dtype;
  if (want !== dtype) {
    const c = t.to(want);
    t.dispose();
    t = c;
  }
  if (options.device && options.device !== 'cpu') {
    const c = t.to({ device: options.device });
    t.dispose();
    t = c;
  }
  return finish(t, options);
}

/** Wrap a typed array with a shape (copying). */
export function fromTypedArray(data: TypedArray, shape: number[], dtype?: DType): Tensor {
  return new Tensor(native.fromBuffer(data, shape, dtype ?? dtypeOfHostArray(data)));
}

/** A shape: a list of sizes, or one size for 1-D. */
export type Shape = number[] | number;
const shp = (s: Shape): number[] => (typeof s === 'number' ? [s] : s);
const dev = (o?: TensorOptions) => o?.device ?? null;

export function zeros(shape: Shape, o?: TensorOptions): Tensor {
  return finish(t1('zeros', '', shp(shape), o?.dtype ?? 'float32', null, dev(o), null), o);
}
export function ones(shape: Shape, o?: TensorOptions): Tensor {
  return finish(t1('ones', '', shp(shape), o?.dtype ?? 'float32', null, dev(o), null), o);
}
export function empty(shape: Shape, o?: TensorOptions): Tensor {
  return finish(t1('empty', 'memory_format', shp(shape), o?.dtype ?? 'float32', null, dev(o), null, null), o);
}
export function full(shape: Shape, value: number | boolean, o?: TensorOptions): Tensor {
  return finish(t1('full', '', shp(shape), value, o?.dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32'), null, dev(o), null), o);
}
/** Uniform samples in [0, 1). */
export function rand(shape: Shape, o?: TensorOptions): Tensor {
  return finish(t1('rand', '', shp(shape), o?.dtype ?? 'float32', null, dev(o), null), o);
}
/** Standard normal samples. */
export function randn(shape: Shape, o?: TensorOptions): Tensor {
  return finish(t1('randn', '', shp(shape), o?.dtype ?? 'float32', null, dev(o), null), o);
}
/** Integers uniformly in [low, high). */
export function randint(low: number, high: number, shape: Shape, o?: TensorOptions): Tensor {
  return finish(t1('randint', 'low', low, high, shp(shape), o?.dtype ?? 'int64', null, dev(o), null), o);
}
export function randperm(n: number, o?: TensorOptions): Tensor {
  return t1('randperm', '', n, o?.dtype ?? 'int64', null, dev(o), null);
}
/**
 * `arange(end)` or `arange(start, end, step)`. dtype defaults to int64 when every
 * argument is an integer (as PyTorch), else float32.
 */
export function arange(start: number, end?: number, step = 1, o?: TensorOptions): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  const ints = [start, end, step].every(Number.isInteger);
  return finish(t1('arange', 'start_step', start, end, step, o?.dtype ?? (ints ? 'int64' : 'float32'), null, dev(o), null), o);
}
export function linspace(start: number, end: number, steps: number, o?: TensorOptions): Tensor {
  return finish(t1('linspace', '', start, end, steps, o?.dtype ?? 'float32', null, dev(o), null), o);
}
export function eye(n: number, o?: TensorOptions): Tensor {
  return finish(t1('eye', '', n, o?.dtype ?? 'float32', null, dev(o), null), o);
}
export function zerosLike(t: Tensor, o?: TensorOptions): Tensor {
  return finish(t1('zeros_like', '', t._h, o?.dtype ?? null, null, dev(o), null, null), o);
}
export function onesLike(t: Tensor, o?: TensorOptions): Tensor {
  return finish(t1('ones_like', '', t._h, o?.dtype ?? null, null, dev(o), null, null), o);
}
export function fullLike(t: Tensor, value: number, o?: TensorOptions): Tensor {
  return finish(t1('full_like', '', t._h, value, o?.dtype ?? null, null, dev(o), null, null), o);
}
export function randLike(t: Tensor): Tensor {
  return t1('rand_like', '', t._h);
}
export function randnLike(t: Tensor): Tensor {
  return t1('randn_like', '', t._h);
}

// ---- free functions ---------------------------------------------------------------

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return t1('cat', '', hs(tensors), dim);
}
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return t1('stack', '', hs(tensors), dim);
}
/** Elements of `x` where `condition`, else of `y`. */
export function where(condition: Tensor, x: Arg, y: Arg): Tensor {
  return t1('where', 'self', condition._h, h(x), h(y));
}
export function matmul(a: Tensor, b: Tensor): Tensor {
  return a.matmul(b);
}
export function add(a: Tensor, b: Arg): Tensor {
  return a.add(b);
}
export function mul(a: Tensor, b: Arg): Tensor {
  return a.mul(b);
}
export function split(t: Tensor, splitSize: number | number[], dim = 0): Tensor[] {
  return t.split(splitSize, dim);
}
export function einsum(equation: string, ...operands: Tensor[]): Tensor {
  return t1('einsum', '', equation, hs(operands), null);
}
export function allclose(a: Tensor, b: Tensor, rtol = 1e-5, atol = 1e-8): boolean {
  return a.allclose(b, rtol, atol);
}

/** Is `x` a {@link Tensor}? */
export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}
