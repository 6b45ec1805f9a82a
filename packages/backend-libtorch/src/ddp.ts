/**
 * Data parallelism for libtorch models (PyTorch's `DistributedDataParallel`):
 * rank 0's weights are broadcast at wrap, gradients are averaged across the ranks of
 * a {@link GlooProcessGroup} in buckets while backward still runs, and `noSync`
 * skips the averaging for gradient accumulation. The bucketing, hooks and
 * collectives live in C++ (native/ddp.cc); this module wraps the model.
 * @module
 */
import type { DistributedDataParallelOptions, ProcessGroup } from '@accelerate/core';
import { GlooProcessGroup } from './distributed.js';
import { native, type NativeGroup, type NativeHandle } from './native.js';
import { Module } from './nn/module.js';
import { isGradEnabled, type Tensor } from './tensor.js';


/** The C++ reducer (ddp.cc). */
interface NativeReducer {
  broadcastState(): void;
  prepareForBackward(): void;
  syncBuffers(): void;
  buckets(): number[][];
  stats(): { reductions: number; bucketsLaunchedDuringBackward: number; commWaitMs: number; joinShadowedBackwards: number };
  setJoin(enabled: boolean, divideByInitialWorldSize: boolean): void;
  joinNotify(sync: boolean, syncBuffers: boolean): void;
  joinShadow(syncBuffers: boolean): Promise<boolean>;
  joinFinal(lastJoiner: boolean): void;
}

const ddpNative = native as unknown as {
  ddpCreate(
    group: NativeGroup,
    params: NativeHandle[],
    names: string[],
    buffers: NativeHandle[],
    capBytes: number,
    firstCapBytes: number,
    findUnused: boolean,
    wireDtype: string | null,
    gradientAsBucketView: boolean,
  ): NativeReducer;
};

interface DdpState {
  module: Module;
  proxy: Module;
  reducer: NativeReducer;
  names: string[];
  sync: boolean;
  broadcastBuffers: boolean;
  /** Inside {@link joinDistributed}: forwards tell joined ranks what to shadow. */
  joining: boolean;
  options: Required<Pick<DistributedDataParallelOptions, 'bucketCapMb' | 'findUnusedParameters' | 'broadcastBuffers' | 'commHook' | 'gradientAsBucketView'>>;
}

/** Both the returned proxy and the original module map to their state. */
const states = new WeakMap<object, DdpState>();

const KNOWN = new Set(['dim', 'broadcastBuffers', 'bucketCapMb', 'findUnusedParameters', 'checkReduction', 'gradientAsBucketView', 'staticGraph', 'commHook']);
const FIRST_BUCKET_BYTES = 1 << 20;

/**
 * Wrap `model` for data parallelism over `group` (every rank calls this with the
 * same model architecture, in the same order relative to other collectives).
 *
 * Blocks until rank 0's parameters and buffers are copied into `model` on every rank.
 * Returns a proxy of `model` that behaves as the model (fields, methods,
 * `instanceof`) whose `forward` arms gradient averaging for the next backward and
 * broadcasts buffers; `backward()` then returns with averaged gradients. The
 * original `model` stays usable without synchronisation ({@link unwrapDistributed}).
 * Move or cast the model before wrapping: replacing parameter storage afterwards
 * (`to(dtype)`) detaches the gradient hooks.
 */
export function wrapDistributed<M extends Module>(model: M, group: ProcessGroup<Tensor>, options: Partial<DistributedDataParallelOptions> = {}): M {
  const existing = states.get(model);
  if (existing) return existing.proxy as M;
  if (!(model instanceof Module)) throw new TypeError('wrapDistributed: expected an nn.Module');
  if (!(group instanceof GlooProcessGroup)) {
    throw new TypeError(`wrapDistributed: the group must come from backend-libtorch (LibtorchBackend.initProcessGroup), got a '${group.backend}' group of another backend`);
  }
  for (const k of Object.keys(options)) {
    if (!KNOWN.has(k)) throw new TypeError(`wrapDistributed: unknown option '${k}'. Valid options: ${[...KNOWN].join(', ')}.`);
  }
  const bucketCapMb = options.bucketCapMb ?? 25;
  if (!(Number.isFinite(bucketCapMb) && bucketCapMb > 0)) {
    throw new RangeError(`wrapDistributed: bucketCapMb must be a positive number of MiB, got ${String(options.bucketCapMb)}`);
  }
  const commHook = options.commHook ?? 'no';
  if (commHook === 'power_sgd' || commHook === 'batched_power_sgd') {
    throw new Error(`wrapDistributed: commHook '${commHook}' is not implemented by backend-libtorch; use 'no', 'fp16' or 'bf16'`);
  }
  if (!['no', 'fp16', 'bf16'].includes(commHook)) {
    throw new TypeError(`wrapDistributed: commHook must be 'no', 'fp16' or 'bf16', got '${String(commHook)}'`);
  }
  if (commHook === 'bf16' && native.torchVersion.startsWith('1.')) {
    throw new Error(`wrapDistributed: commHook 'bf16' needs libtorch 2.x: gloo in libtorch ${native.torchVersion} cannot all-reduce bfloat16; use 'fp16'`);
  }
  const findUnusedParameters = options.findUnusedParameters ?? false;
  const broadcastBuffers = options.broadcastBuffers ?? true;
  const gradientAsBucketView = options.gradientAsBucketView ?? true;

  const named = model.namedParameters().filter(([, p]) => p.requiresGrad);
  const buffers = model.namedBuffers();
  const capBytes = Math.max(1, Math.round(bucketCapMb * 1024 * 1024));
  const reducer = ddpNative.ddpCreate(
    group._native,
    named.map(([, p]) => p._h),
    named.map(([n]) => n),
    buffers.map(([, b]) => b._h),
    capBytes,
    Math.min(FIRST_BUCKET_BYTES, capBytes),
    findUnusedParameters,
    commHook === 'fp16' ? 'float16' : commHook === 'bf16' ? 'bfloat16' : null,
    gradientAsBucketView,
  );
  reducer.broadcastState();

  const state: DdpState = {
    module: model,
    proxy: model, // replaced by the proxy below
    reducer,
    names: named.map(([n]) => n),
    sync: true,
    broadcastBuffers: broadcastBuffers && buffers.length > 0,
    joining: false,
    options: { bucketCapMb, findUnusedParameters, broadcastBuffers, commHook, gradientAsBucketView },
  };

  const forward = (...args: unknown[]): unknown => {
    // As torch's DDP: only a forward that will be followed by a synchronised backward
    // (grad mode on, sync on) broadcasts buffers and arms the gradient hooks.
    const willSync = state.sync && isGradEnabled();
    if (state.joining) {
      // Every forward under join tells the joined ranks whether a synchronised backward follows.
      reducer.joinNotify(willSync, state.broadcastBuffers);
      if (willSync) reducer.prepareForBackward();
    } else if (willSync) {
      if (state.broadcastBuffers) reducer.syncBuffers();
      reducer.prepareForBackward();
    }
    // Looked up per call so later patches of model.forward (autocast, hooks) apply.
    return (model.forward as (...a: unknown[]) => unknown)(...args);
  };
  const bound = new Map<PropertyKey, { fn: unknown; bound: unknown }>();
  state.proxy = new Proxy(model, {
    get(target, key) {
      if (key === 'forward') return forward;
      const v = Reflect.get(target, key, target);
      // Methods run on the module itself (works with #private fields), as model.module.* in PyTorch.
      if (typeof v === 'function' && key !== 'constructor') {
        const hit = bound.get(key);
        if (hit && hit.fn === v) return hit.bound;
        const b = (v as (...a: unknown[]) => unknown).bind(target);
        bound.set(key, { fn: v, bound: b });
        return b;
      }
      return v;
    },
    set(target, key, value) {
      return Reflect.set(target, key, value, target);
    },
  });
  states.set(model, state);
  states.set(state.proxy, state);
  return state.proxy as M;
}

function stateOf(model: unknown, what: string): DdpState {
  const s = typeof model === 'object' && model !== null ? states.get(model) : undefined;
  if (!s) throw new TypeError(`${what}: the model is not wrapped for data parallelism (wrapDistributed / Accelerator.prepare with several processes)`);
  return s;
}

/** True when `model` (the proxy or the original module) was wrapped by {@link wrapDistributed}. */
export function isDistributed(model: unknown): boolean {
  return typeof model === 'object' && model !== null && states.has(model);
}

/**
 * Turn gradient averaging on or off (DDP's `no_sync`). While off, forward does not
 * arm the hooks and backward only accumulates locally; the next synchronised
 * backward averages the accumulated gradients. A no-op for models that are not wrapped.
 */
export function setGradientSync(model: unknown, enabled: boolean): void {
  const s = typeof model === 'object' && model !== null ? states.get(model) : undefined;
  if (s) s.sync = enabled;
}

/** Run `fn` with gradient averaging of `model` turned off, restoring it afterwards. */
export async function noSync<R>(model: unknown, fn: () => R | Promise<R>): Promise<R> {
  const s = stateOf(model, 'noSync');
  const prev = s.sync;
  s.sync = false;
  try {
    return await fn();
  } finally {
    s.sync = prev;
  }
}

/**
 * Make the next backward average gradients even though the forwards before it ran
 * under no-sync (Accelerate's `trigger_sync_in_backward`).
 */
export function triggerSyncInBackward(model: unknown): void {
  stateOf(model, 'triggerSyncInBackward').reducer.prepareForBackward();
}

/** The original module behind a {@link wrapDistributed} proxy (anything else is returned as is). */
export function unwrapDistributed<M>(model: M): M {
  const s = typeof model === 'object' && model !== null ? states.get(model) : undefined;
  return (s ? s.module : model) as M;
}

/** Options of {@link joinDistributed} (torch's `DistributedDataParallel.join`). */
export interface JoinOptions {
  /**
   * Divide gradients by the world size the run started with (default true), as if the
   * ranks that ran out of inputs contributed zero gradients; false divides by the number
   * of ranks still active in that step.
   */
  divideByInitialWorldSize?: boolean;
}

/**
 * Train on uneven inputs (torch's `Join` context with DDP's join hook): runs `fn`, in
 * which this rank iterates over its own, possibly shorter, data; once `fn` returns, this
 * rank keeps matching the other ranks' collectives until every rank has returned, so
 * none of them hangs. Every rank must call it with the same models, in the same order.
 *
 * While a rank has run out of inputs, each forward of an active rank costs one extra
 * small all-reduce (which ranks are still active, and whether a synchronised backward
 * follows); a synchronised backward is matched with zero gradients, divided as
 * {@link JoinOptions.divideByInitialWorldSize} says. When all ranks are done, the
 * model of the last rank to run out (which took every step) is copied to all ranks,
 * because the others stopped updating theirs. Optimizer states are not synchronised.
 *
 * Limits (as in PyTorch): each model runs one forward, followed by at most one backward,
 * per iteration, the models in the order given; other collectives inside `fn` (gather,
 * reduce) cannot be matched by ranks that are done and hang until the timeout.
 * If `fn` throws, the error propagates without waiting for the other ranks.
 */
export async function joinDistributed<R>(models: readonly unknown[], fn: () => R | Promise<R>, options: JoinOptions = {}): Promise<R> {
  const list = models.map((m) => stateOf(m, 'joinDistributed'));
  if (list.length === 0) throw new TypeError('joinDistributed: give at least one model wrapped for data parallelism');
  if (new Set(list).size !== list.length) throw new TypeError('joinDistributed: the same model is listed twice');
  if (list.some((s) => s.joining)) throw new Error('joinDistributed: a model is already inside a join; joins do not nest');
  const divide = options.divideByInitialWorldSize ?? true;
  for (const s of list) {
    s.reducer.setJoin(true, divide);
    s.joining = true;
  }
  const leave = () => {
    for (const s of list) {
      s.joining = false;
      s.reducer.setJoin(false, true);
    }
  };
  let result: R;
  try {
    result = await fn();
  } catch (e) {
    leave();
    throw e;
  }
  try {
    // Shadow the active ranks until the first model's status says everyone is done.
    let lastJoiner = true;
    shadow: for (;;) {
      for (const [i, s] of list.entries()) {
        const more = await s.reducer.joinShadow(s.broadcastBuffers);
        if (i === 0 && !more) break shadow;
      }
      lastJoiner = false;
    }
    for (const s of list) s.reducer.joinFinal(lastJoiner);
  } finally {
    leave();
  }
  return result;
}

/** How a wrapped model's gradients are bucketed and how much it has communicated. */
export interface DistributedDataParallelInfo {
  /** Parameter names per bucket, in launch order (reverse registration order). */
  buckets: string[][];
  /** Backward passes whose gradients were averaged. */
  reductions: number;
  /** Buckets whose all-reduce started while backward was still running. */
  bucketsLaunchedDuringBackward: number;
  /** Time spent blocked at the end of backward waiting for all-reduces, in ms. */
  commWaitMs: number;
  /** Backward passes of other ranks this rank matched with zeros after running out of inputs ({@link joinDistributed}). */
  joinShadowedBackwards: number;
  /** Whether gradient averaging is currently on. */
  sync: boolean;
  options: DdpState['options'];
}

/** Buckets and counters of a wrapped model (for tests and tuning `bucketCapMb`). */
export function ddpInfo(model: unknown): DistributedDataParallelInfo {
  const s = stateOf(model, 'ddpInfo');
  return { buckets: s.reducer.buckets().map((b) => b.map((i) => s.names[i]!)), ...s.reducer.stats(), sync: s.sync, options: { ...s.options } };
}
