/**
 * Accelerate's collective operations on nested data (`gather`,
 * `gatherObject`, `broadcast`, `broadcastObjectList`, `reduce`,
 * `padAcrossProcesses`) and `splitBetweenProcesses`, written once over a
 * {@link ProcessGroup} and a {@link TensorOps}, so every backend and
 * transport shares them.
 *
 * With one process (no group) every collective is the identity (or a clone
 * for `reduce`), as in Accelerate.
 * @module
 */
import type { ProcessGroup, ReduceOp } from '../interfaces/process-group.js';
import { HostTensor, isHostArray, type DType, type HostArray } from '../tensor/host-tensor.js';
import { parseFlagFromEnv } from '../utils/environment.js';
import { deserializeObject, serializeObject } from './object-codec.js';
import { broadcastBytes } from '../data/serialize.js';
import { describeType, findDevice, isPlainObject, opsFor, recursivelyApply } from './structure.js';
import { hostTensorOps, type TensorOps } from './tensor-ops.js';

/**
 * Raised when a collective cannot run because the processes disagree, e.g.
 * different tensor shapes in debug mode (`ACCELERATE_DEBUG_MODE`).
 */
export class DistributedOperationException extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DistributedOperationException';
  }
}

/** Who runs a collective and with what. State builds one of these for its process. */
export interface CollectiveContext<T> {
  /** The group to communicate over; absent when running a single process. */
  group?: ProcessGroup<T>;
  /** Tensor operations of the backend whose tensors are passed in. */
  ops: TensorOps<T>;
  /** World size P. */
  numProcesses: number;
  /** This process's rank p. */
  processIndex: number;
  /**
   * Check that every process passes the same shapes before running
   * (Accelerate's debug mode). Default: env `ACCELERATE_DEBUG_MODE`.
   */
  debug?: boolean;
  /** Device the run is configured for; in debug mode tensors on another device kind are rejected. */
  device?: string;
  /**
   * Send tensors through host memory (`ops.toHost` → typed array → `ops.fromHost`)
   * because the group only carries typed arrays (e.g. a tfjs backend over gloo).
   * Results are then new tensors, not the inputs modified in place.
   */
  hostTransport?: boolean;
}

/** Reductions {@link reduce} accepts. */
export type Reduction = 'sum' | 'mean' | 'max';

function checkRank(value: number, ctx: CollectiveContext<unknown>, what: string, name: string): void {
  if (!Number.isInteger(value) || value < 0 || value >= ctx.numProcesses) {
    throw new RangeError(`${what}: ${name} must be a rank in [0, ${ctx.numProcesses - 1}], got ${value}.`);
  }
}

/** True when the call must communicate; validates the context. */
function isDistributed<T>(ctx: CollectiveContext<T>, what: string): ctx is CollectiveContext<T> & { group: ProcessGroup<T> } {
  if (!Number.isInteger(ctx.numProcesses) || ctx.numProcesses < 1) {
    throw new RangeError(`${what}: numProcesses must be a positive integer, got ${ctx.numProcesses}.`);
  }
  if (ctx.numProcesses === 1) return false;
  if (!ctx.group) {
    throw new Error(
      `${what}: numProcesses is ${ctx.numProcesses} but no process group was given; ` +
        'pass the group from the backend (backend.communication.initProcessGroup) or set numProcesses to 1.',
    );
  }
  if (ctx.group.size !== ctx.numProcesses || ctx.group.rank !== ctx.processIndex) {
    throw new Error(
      `${what}: the context says rank ${ctx.processIndex} of ${ctx.numProcesses} but the group is rank ` +
        `${ctx.group.rank} of ${ctx.group.size}; build the context from the group it uses.`,
    );
  }
  return true;
}

function debugEnabled(ctx: CollectiveContext<unknown>): boolean {
  return ctx.debug ?? parseFlagFromEnv('ACCELERATE_DEBUG_MODE', false);
}

function named<F extends (...args: any[]) => unknown>(name: string, fn: F): F {
  Object.defineProperty(fn, 'name', { value: name });
  return fn;
}

/**
 * How one leaf travels: tensors of `ctx.ops` with the context's transport;
 * HostTensors (when the backend is not host ops) as typed arrays, so a
 * batch that was never moved to a device can still be gathered.
 */
interface Route {
  ops: TensorOps<any>;
  host: boolean;
}

function routeOf(x: unknown, ctx: CollectiveContext<any>): Route | undefined {
  if (x instanceof HostTensor && !ctx.ops.isTensor(x)) return { ops: hostTensorOps, host: true };
  if (ctx.ops.isTensor(x)) return { ops: ctx.ops, host: ctx.hostTransport ?? false };
  return undefined;
}

/** The tensor leaves of `data` in traversal order with their route; TypeError naming `what` on any other leaf. */
function tensorLeaves(data: unknown, ctx: CollectiveContext<any>, what: string): Array<[leaf: unknown, route: Route]> {
  const leaves: Array<[unknown, Route]> = [];
  const isTensor = (x: unknown): boolean => routeOf(x, ctx) !== undefined;
  recursivelyApply(
    named(what, (t: unknown) => {
      leaves.push([t, routeOf(t, ctx)!]);
      return t;
    }),
    data,
    { testType: isTensor, errorOnOtherType: true },
  );
  return leaves;
}

/** `data` with its tensor leaves replaced, in traversal order, by `results`. */
function rebuild<D>(data: D, results: unknown[], ctx: CollectiveContext<any>): D {
  let i = 0;
  return recursivelyApply(() => results[i++], data, { testType: (x) => routeOf(x, ctx) !== undefined }) as D;
}

/** Shapes of the tensors of `data` as JSON-able structure (other leaves by type name). */
function describeShapes(data: unknown, ops: TensorOps<unknown>): unknown {
  if (Array.isArray(data)) return data.map((x) => describeShapes(x, ops));
  if (data instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of data) out[String(k)] = describeShapes(v, ops);
    return out;
  }
  if (isPlainObject(data)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(data)) out[k] = describeShapes(data[k], ops);
    return out;
  }
  const o = opsFor(data, ops);
  if (o) return o.shape(data);
  return `<${describeType(data)}>`;
}

function deviceKind(device: string): string {
  return device.split(':')[0];
}

/**
 * Debug-mode check run before a collective: tensors must be on the
 * configured device kind, and `key(shapes)` must agree on every process.
 */
async function verifyAcrossProcesses<T>(
  what: string,
  data: unknown,
  ctx: CollectiveContext<T> & { group: ProcessGroup<T> },
  requirement: string,
  key: (shapes: unknown) => unknown = (s) => s,
): Promise<void> {
  if (ctx.device !== undefined) {
    const found = findDevice(data, ctx.ops);
    if (found !== undefined && deviceKind(found) !== deviceKind(ctx.device)) {
      throw new DistributedOperationException(
        `${what}: one or more tensors are on '${found}' while the run is configured for '${ctx.device}'; ` +
          `move them to '${ctx.device}' (sendToDevice) before calling ${what}.`,
      );
    }
  }
  const shapes = describeShapes(data, ctx.ops as TensorOps<unknown>);
  const all = (await gatherObject([shapes], ctx)) as unknown[];
  const keys = all.map((s) => JSON.stringify(key(s)));
  if (keys.every((k) => k === keys[0])) return;
  const lines = all.map((s, i) => `  - Process ${i}: ${JSON.stringify(s)}`).join('\n');
  throw new DistributedOperationException(
    `${what}: ${requirement}, but the processes passed different shapes (debug mode, ACCELERATE_DEBUG_MODE):\n${lines}\n` +
      'Make every process pass the same structure and shapes (padAcrossProcesses can equalise one dimension).',
  );
}

// ---- transport of one tensor ------------------------------------------------

/** What travels when `hostTransport` is set: 16-bit floats go as float32 so every transport can reduce them. */
function toWire(h: HostTensor): HostTensor {
  return h.dtype === 'float16' || h.dtype === 'bfloat16' ? hostTensorOps.cast(h, 'float32') : h;
}

function fromWire(h: HostTensor, dtype: DType): HostTensor {
  return h.dtype === dtype ? h : hostTensorOps.cast(h, dtype);
}

function asTensor(part: unknown, like: unknown, shape: number[], ops: TensorOps<any>): unknown {
  if (ops.isTensor(part)) return part;
  if (isHostArray(part)) return ops.fromHost(new HostTensor(part, shape, ops.dtype(like)), ops.device(like));
  throw new TypeError(`process group returned a ${describeType(part)} where a tensor or typed array was expected.`);
}

type Group = ProcessGroup<any>;

async function allGatherTensor(t: unknown, { ops, host }: Route, group: Group): Promise<unknown> {
  let input = t;
  let shape = ops.shape(t);
  if (shape.length === 0) {
    // A 0-d tensor is gathered as length 1, as in Accelerate.
    const h = ops.toHost(t);
    input = ops.fromHost(new HostTensor(h.data, [1], h.dtype), ops.device(t));
    shape = [1];
  }
  if (!host) {
    const parts = await group.allGather(input).wait();
    return ops.cat(
      parts.map((p) => asTensor(p, input, shape, ops)),
      0,
    );
  }
  const wire = toWire(ops.toHost(input));
  const parts = await group.allGather(wire.data).wait();
  const joined = hostTensorOps.cat(
    parts.map((p) => new HostTensor(p as HostArray, wire.shape, wire.dtype)),
    0,
  );
  return ops.fromHost(fromWire(joined, ops.dtype(input)), ops.device(input));
}

/** In-place all-reduce of `t` (a tensor this module owns); returns the reduced tensor. */
async function allReduceTensor(t: unknown, op: ReduceOp, { ops, host }: Route, group: Group): Promise<unknown> {
  if (!host) {
    await group.allReduce(t, op).wait();
    return t;
  }
  const wire = toWire(ops.toHost(t));
  await group.allReduce(wire.data, op).wait();
  return ops.fromHost(fromWire(wire, ops.dtype(t)), ops.device(t));
}

async function broadcastTensor(t: unknown, src: number, { ops, host }: Route, group: Group): Promise<unknown> {
  if (!host) {
    await group.broadcast(t, src).wait();
    return t;
  }
  const wire = toWire(ops.toHost(t));
  await group.broadcast(wire.data, src).wait();
  return ops.fromHost(fromWire(wire, ops.dtype(t)), ops.device(t));
}

/** A copy of `t` with the same dtype. */
function cloneTensor<T>(t: T, ops: TensorOps<T>): T {
  // mulScalar would turn bool into int64; cat of one tensor copies and keeps the dtype.
  if (ops.dtype(t) === 'bool' && ops.shape(t).length > 0) return ops.cat([t], 0);
  return ops.mulScalar(t, 1);
}

// ---- collectives --------------------------------------------------------------

/**
 * Gather the tensors of a nested structure from every process: each tensor
 * becomes the concatenation (dim 0, rank order) of that tensor on all
 * processes; a 0-d tensor counts as length 1. Identity with one process.
 * @throws TypeError on a leaf that is not a tensor (multi-process).
 * @throws DistributedOperationException in debug mode when shapes differ across processes.
 */
export async function gather<T, D>(data: D, ctx: CollectiveContext<T>): Promise<D> {
  if (!isDistributed(ctx, 'gather')) return data;
  if (debugEnabled(ctx)) await verifyAcrossProcesses('gather', data, ctx, 'every process must pass the same shapes');
  const leaves = tensorLeaves(data, ctx, 'gather');
  const results: unknown[] = [];
  for (const [t, route] of leaves) results.push(await allGatherTensor(t, route, ctx.group));
  return rebuild(data, results, ctx);
}

/**
 * Gather a JSON-like value from every process (see `serializeObject` for
 * what can travel). Arrays are flattened one level, so `gatherObject([x])`
 * returns `[x0, x1, …]` in rank order; a non-array value contributes one
 * element. With one process an array is returned as is and any other value
 * as `[value]`.
 *
 * Wire format: one all-gather of the byte sizes, then one all-gather of
 * buffers zero-padded to the largest size.
 */
export async function gatherObject<E>(obj: E[] | readonly E[] | E, ctx: CollectiveContext<any>): Promise<E[]> {
  if (!isDistributed(ctx, 'gatherObject')) return (Array.isArray(obj) ? obj : [obj]) as E[];
  const bytes = serializeObject(obj);
  const sizes = await ctx.group.allGather(BigInt64Array.of(BigInt(bytes.length))).wait();
  const lengths = sizes.map((s) => Number((s as BigInt64Array)[0]));
  const max = Math.max(...lengths);
  const padded = new Uint8Array(max);
  padded.set(bytes);
  const parts = await ctx.group.allGather(padded).wait();
  const out: E[] = [];
  parts.forEach((p, rank) => {
    const value = deserializeObject((p as Uint8Array).subarray(0, lengths[rank]));
    if (Array.isArray(value)) out.push(...(value as E[]));
    else out.push(value as E);
  });
  return out;
}

/**
 * Copy the tensors of a nested structure from process `from` to every
 * process (same structure and shapes everywhere). Tensors are overwritten in
 * place unless the context uses host transport; the result is returned
 * either way. Identity with one process.
 */
export async function broadcast<T, D>(data: D, ctx: CollectiveContext<T>, from = 0): Promise<D> {
  if (!isDistributed(ctx, 'broadcast')) return data;
  checkRank(from, ctx, 'broadcast', 'from');
  if (debugEnabled(ctx)) await verifyAcrossProcesses('broadcast', data, ctx, 'every process must pass the same shapes');
  const leaves = tensorLeaves(data, ctx, 'broadcast');
  const results: unknown[] = [];
  for (const [t, route] of leaves) results.push(await broadcastTensor(t, from, route, ctx.group));
  return rebuild(data, results, ctx);
}

/**
 * Replace, in place, every element of `list` with the element of process
 * `from`'s list at the same index (JSON-like values). Returns `list`.
 * Every process must pass a list of the same length.
 */
export async function broadcastObjectList<E>(list: E[], ctx: CollectiveContext<any>, from = 0): Promise<E[]> {
  if (!isDistributed(ctx, 'broadcastObjectList')) return list;
  checkRank(from, ctx, 'broadcastObjectList', 'from');
  const isSource = ctx.processIndex === from;
  const buffer = await broadcastBytes(ctx.group, isSource ? serializeObject(list) : null, from);
  if (!isSource) {
    const received = deserializeObject(buffer) as E[];
    for (let i = 0; i < list.length; i++) list[i] = received[i];
  }
  return list;
}

/**
 * Reduce the tensors of a nested structure across processes into new
 * tensors (inputs are not modified): `sum`, `mean` (sum / P) or `max`, then
 * multiplied by `scale`. With one process each tensor is cloned (and scaled).
 *
 * Accelerate silently sums for `'none'`; here anything but sum/mean/max is
 * rejected. `scale` is applied on every platform (Accelerate only honours it
 * on XLA).
 */
export async function reduce<T, D>(data: D, ctx: CollectiveContext<T>, reduction: Reduction = 'mean', scale = 1): Promise<D> {
  if (reduction !== 'sum' && reduction !== 'mean' && reduction !== 'max') {
    throw new RangeError(
      `reduce: reduction '${String(reduction)}' is not supported; use 'sum', 'mean' or 'max'` +
        (String(reduction) === 'none' ? " (Accelerate treats 'none' as 'sum'; pass 'sum' explicitly)." : '.'),
    );
  }
  const finish = (t: unknown, ops: TensorOps<unknown>, factor: number): unknown => {
    if (factor === 1) return t;
    const out = ops.mulScalar(t, factor);
    ops.dispose?.(t);
    return out;
  };
  if (!isDistributed(ctx, 'reduce')) {
    const leaves = tensorLeaves(data, ctx, 'reduce');
    return rebuild(
      data,
      leaves.map(([t, { ops }]) => finish(cloneTensor(t, ops), ops, scale)),
      ctx,
    );
  }
  if (debugEnabled(ctx)) await verifyAcrossProcesses('reduce', data, ctx, 'every process must pass the same shapes');
  const leaves = tensorLeaves(data, ctx, 'reduce');
  const factor = (reduction === 'mean' ? 1 / ctx.numProcesses : 1) * scale;
  const results: unknown[] = [];
  for (const [t, route] of leaves) {
    const reduced = await allReduceTensor(cloneTensor(t, route.ops), reduction === 'max' ? 'max' : 'sum', route, ctx.group);
    results.push(finish(reduced, route.ops, factor));
  }
  return rebuild(data, results, ctx);
}

/** Options of {@link padAcrossProcesses}. */
export interface PadAcrossProcessesOptions {
  /** Dimension to pad (default 0; negative counts from the end). */
  dim?: number;
  /** Value of the padding (default 0). */
  padIndex?: number;
  /** Pad before the data instead of after. */
  padFirst?: boolean;
}

/**
 * Pad every tensor of a nested structure along `dim` to the largest size
 * that dimension has on any process, so the results can be gathered. A
 * tensor already at the largest size, or whose `dim` is out of range, is
 * returned as the same object.
 * @throws DistributedOperationException in debug mode when tensors differ in number of dimensions across processes.
 */
export async function padAcrossProcesses<T, D>(
  data: D,
  ctx: CollectiveContext<T>,
  options: PadAcrossProcessesOptions = {},
): Promise<D> {
  const { dim = 0, padIndex = 0, padFirst = false } = options;
  const distributed = isDistributed(ctx, 'padAcrossProcesses');
  if (distributed && debugEnabled(ctx)) {
    try {
      await verifyAcrossProcesses(
        'padAcrossProcesses',
        data,
        ctx,
        'tensors must have the same number of dimensions on every process',
        ndims,
      );
    } catch (e) {
      if (!(e instanceof DistributedOperationException)) throw e;
      throw new DistributedOperationException(`Error found while calling \`padAcrossProcesses\`: ${e.message}`, { cause: e });
    }
  }
  const leaves = tensorLeaves(data, ctx, 'padAcrossProcesses');
  const results: unknown[] = [];
  for (const [t, { ops }] of leaves) {
    const shape = ops.shape(t);
    if (dim >= shape.length || dim < -shape.length) {
      results.push(t);
      continue;
    }
    const d = dim < 0 ? dim + shape.length : dim;
    let max = shape[d];
    if (distributed) {
      const sizes = await ctx.group.allGather(BigInt64Array.from(shape, (s) => BigInt(s))).wait();
      for (const s of sizes) max = Math.max(max, Number((s as BigInt64Array)[d]));
    }
    if (max === shape[d]) {
      results.push(t);
      continue;
    }
    const padShape = [...shape];
    padShape[d] = max - shape[d];
    const pad = ops.fullLike(t, padShape, padIndex);
    results.push(ops.cat(padFirst ? [pad, t] : [t, pad], d));
  }
  return rebuild(data, results, ctx);
}

/** Number of dimensions of each tensor in a shape description (for the pad check). */
function ndims(shapes: unknown): unknown {
  if (Array.isArray(shapes)) {
    return shapes.every((s) => typeof s === 'number') ? shapes.length : shapes.map(ndims);
  }
  if (typeof shapes === 'object' && shapes !== null) {
    return Object.fromEntries(Object.entries(shapes).map(([k, v]) => [k, ndims(v)]));
  }
  return shapes;
}

// ---- splitting -----------------------------------------------------------------

/** Options of {@link splitBetweenProcesses}. */
export interface SplitBetweenProcessesOptions {
  /** World size P. */
  numProcesses: number;
  /** This process's rank p. */
  processIndex: number;
  /**
   * Repeat the last element until this process holds `ceil(len / P)` items,
   * so every process has the same count (drop the extras after gathering).
   */
  applyPadding?: boolean;
  /** Ops for backend tensors (HostTensors are always handled). */
  ops?: TensorOps<any>;
}

/** A dataset that can be split by index (Hugging Face `datasets.Dataset`-like). */
export interface SelectableDataset<D = unknown> {
  readonly length: number;
  select(indices: number[]): D;
}

function isSelectable(x: unknown): x is SelectableDataset {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as { select?: unknown }).select === 'function' &&
    typeof (x as { length?: unknown }).length === 'number'
  );
}

function lengthOf(x: unknown, ops: TensorOps<any> | undefined, where: string): number {
  if (Array.isArray(x) || isHostArray(x) || typeof x === 'string') return x.length;
  const o = opsFor(x, ops);
  if (o) {
    const shape = o.shape(x);
    if (shape.length === 0) throw new TypeError(`splitBetweenProcesses: ${where} is a 0-d tensor and has no length to split.`);
    return shape[0];
  }
  if (isSelectable(x)) return x.length;
  throw new TypeError(
    `splitBetweenProcesses: ${where} is a ${describeType(x)}, which has no length; pass arrays, tensors, datasets with select(), or a plain object of those.`,
  );
}

/**
 * This process's share of `inputs`, for distributed inference: with
 * `q, e = divmod(len, P)`, rank p gets items `[p·q + min(p, e), +q + (p < e ? 1 : 0))`.
 * Works on arrays, typed arrays, tensors (dim 0), datasets with `select`, and
 * plain objects of those (all values must have the same length; the object
 * is updated in place and returned, as in Accelerate). With one process the
 * input is returned unchanged. Strings and other values are returned as is.
 */
export function splitBetweenProcesses<D>(inputs: D, options: SplitBetweenProcessesOptions): D {
  const { numProcesses: P, processIndex: p, applyPadding = false, ops } = options;
  if (!Number.isInteger(P) || P < 1) {
    throw new RangeError(`splitBetweenProcesses: numProcesses must be a positive integer, got ${P}.`);
  }
  if (!Number.isInteger(p) || p < 0 || p >= P) {
    throw new RangeError(`splitBetweenProcesses: processIndex must be in [0, ${P - 1}], got ${p}.`);
  }
  if (P === 1) return inputs;

  let length: number;
  const isDict = isPlainObject(inputs) && !isSelectable(inputs);
  if (isDict) {
    const keys = Object.keys(inputs);
    if (keys.length === 0) return inputs;
    const lengths = keys.map((k) => lengthOf(inputs[k], ops, `key '${k}'`));
    length = lengths[0];
    if (!lengths.every((l) => l === length)) {
      const detail = keys.map((k, i) => `'${k}': ${lengths[i]}`).join(', ');
      throw new RangeError(
        `splitBetweenProcesses: all values of the object must have the same length, got ${detail}; make them equal (pad or trim) first.`,
      );
    }
  } else if (typeof inputs === 'string') {
    return inputs;
  } else {
    length = lengthOf(inputs, ops, 'the input');
  }

  const q = Math.floor(length / P);
  const e = length % P;
  const start = p * q + Math.min(p, e);
  const end = start + q + (p < e ? 1 : 0);
  const target = q + (e > 0 ? 1 : 0);

  const split = (x: unknown): unknown => {
    if (Array.isArray(x)) {
      const part = x.slice(start, end);
      if (applyPadding && x.length > 0) while (part.length < target) part.push(x[x.length - 1]);
      return part;
    }
    if (isHostArray(x)) {
      const part = x.slice(start, end) as HostArray;
      if (!applyPadding || part.length >= target || x.length === 0) return part;
      const padded = new (part.constructor as { new (n: number): HostArray })(target);
      (padded as Float64Array).set(part as Float64Array);
      (padded as Float64Array).fill(x[x.length - 1] as number, part.length);
      return padded;
    }
    const o = opsFor(x, ops);
    if (o) {
      const part = o.narrow(x, 0, start, end - start);
      const n = o.shape(x)[0];
      if (!applyPadding || end - start >= target || n === 0) return part;
      const last = o.narrow(x, 0, n - 1, 1);
      return o.cat([part, ...new Array<unknown>(target - (end - start)).fill(last)], 0);
    }
    if (isSelectable(x)) {
      const indices: number[] = [];
      for (let i = Math.min(start, x.length); i < Math.min(end, x.length); i++) indices.push(i);
      if (applyPadding && x.length > 0) while (indices.length < target) indices.push(x.length - 1);
      return x.select(indices);
    }
    return x;
  };

  if (isDict) {
    for (const k of Object.keys(inputs as Record<string, unknown>)) (inputs as Record<string, unknown>)[k] = split(inputs[k]);
    return inputs;
  }
  return split(inputs) as D;
}
