/**
 * The `sharding` capability: flat parameter buffers whose storage can be released
 * and given back in place, `param.data = view` re-pointing, tensor gradient hooks,
 * backward-end callbacks and activation checkpointing — what sharded strategies
 * (FSDP, ZeRO) build on.
 * @module
 */
import type { HookHandle, ShardingCapability } from '@accelerate/core';
import { native, type NativeHandle } from './native.js';
import { withAutocastState } from './amp.js';
import { Module, Parameter } from './nn/module.js';
import { enableGrad, forEachTensor, noGrad, Tensor, tidy, untracked } from './tensor.js';

/** Marks where a tensor sat in a forward's arguments (see {@link mapTensors}). */
class Slot {
  constructor(readonly index: number) {}
}

/** `value` with every Tensor (in arrays and plain objects) replaced by `f(tensor, index)`, in {@link forEachTensor}'s order. */
function mapTensors(value: unknown, f: (t: Tensor | Slot, i: number) => unknown, counter = { i: 0 }): unknown {
  if (value instanceof Tensor || value instanceof Slot) return f(value, counter.i++);
  if (Array.isArray(value)) return value.map((v) => mapTensors(v, f, counter));
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapTensors(v, f, counter)]));
  }
  return value;
}

function tensorsOf(value: unknown): Tensor[] {
  const out: Tensor[] = [];
  mapTensors(value, (t) => {
    if (t instanceof Tensor) out.push(t);
  });
  return out;
}

function autocastState(): { enabled: boolean; dtype: string } {
  const prev = native.setAutocast(false);
  native.setAutocast(prev.enabled, prev.dtype);
  return prev;
}


/**
 * One checkpointed call of `module`'s forward: runs it (with its forward hooks)
 * without grad, keeping only the inputs, and attaches the outputs to a native
 * autograd node whose backward recomputes the forward with grad enabled (same CPU
 * RNG state and autocast state) and back-propagates through the recomputation
 * (torch.utils.checkpoint, reentrant variant).
 */
function checkpointedCall(module: Module, inner: (...args: unknown[]) => unknown, args: unknown[]): unknown {
  const run = (a: unknown[]) => module._runHooked(a, (b) => inner.apply(module, b));
  const inputs = tensorsOf(args);
  const needsGrad = inputs.some((t) => t.requiresGrad) || module.parameters().some((p) => p.requiresGrad);
  if (!needsGrad) return run(args);
  const rng = native.getRngState();
  const amp = autocastState();
  // The intermediates of the inner forward are freed at once (tidy): nothing holds them.
  const out = noGrad(() => module._runHooked(args, (b) => tidy(() => inner.apply(module, b))));
  const outputs = tensorsOf(out);
  const template = mapTensors(args, (_t, i) => new Slot(i));
  const backward = (grads: Array<NativeHandle | null>, saved: NativeHandle[]): Array<NativeHandle | null> => {
    const current = native.getRngState();
    native.setRngState(rng);
    try {
      return withAutocastState(amp, () =>
        tidy(() =>
          enableGrad(() => {
            const xs = saved.map((h) => new Tensor(h));
            const recomputeArgs = mapTensors(template, (s) => xs[(s as Slot).index]) as unknown[];
            const outs = tensorsOf(run(recomputeArgs));
            const roots: NativeHandle[] = [];
            const rootGrads: NativeHandle[] = [];
            outs.forEach((o, i) => {
              const g = grads[i];
              if (g && o.requiresGrad) {
                roots.push(o._h);
                rootGrads.push(g);
              }
            });
            if (roots.length) native.backward(roots, rootGrads, false, false);
            // Raw handles (not Tensors): the native node takes them over.
            return xs.map((x) => (native.requiresGrad(x._h) ? native.grad(x._h) : null));
          }),
        ),
      );
    } finally {
      native.setRngState(current);
    }
  };
  const attached = native.checkpointAttach(
    inputs.map((t) => t._h),
    outputs.map((t) => t._h),
    backward,
  );
  const inputSet = new Set(inputs);
  let k = 0;
  const result = mapTensors(out, (t) => {
    const old = t as Tensor;
    const neu = new Tensor(attached[k++]);
    if (!inputSet.has(old) && !(old instanceof Parameter)) old.dispose();
    return neu;
  });
  return result;
}

const CHECKPOINTED = Symbol('accelerate.checkpointed');

/**
 * Make `module.forward` checkpointed while grad is enabled (see {@link checkpointedCall});
 * its forward hooks, including ones registered later, run inside the checkpoint, so they
 * run again during backward's recomputation.
 */
export function checkpointModule(module: Module): HookHandle {
  if (!(module instanceof Module)) throw new TypeError('checkpointModule: expected an nn.Module');
  const m = module as Module & { [CHECKPOINTED]?: boolean; _innerForward?: (...args: unknown[]) => unknown };
  if (m[CHECKPOINTED]) throw new Error(`checkpointModule: this ${module.constructor.name} is already checkpointed; remove the first handle before checkpointing again.`);
  module._installHooks();
  const hooked = module.forward;
  const inner = m._innerForward!;
  const patched = (...args: unknown[]) => (native.isGradEnabled() ? checkpointedCall(module, inner, args) : hooked.apply(module, args));
  module.forward = patched;
  module._checkpointed = true;
  m[CHECKPOINTED] = true;
  let removed = false;
  return {
    remove: () => {
      if (removed) return;
      removed = true;
      if (module.forward === patched) module.forward = hooked;
      module._checkpointed = false;
      m[CHECKPOINTED] = false;
    },
  };
}

/** The libtorch `sharding` capability handler (see {@link ShardingCapability}). */
export function shardingCapability(): Required<ShardingCapability<Tensor, Module>> {
  return {
    /** `t.numel()`: one native call (~0.1 µs). */
    numel: (t) => native.numel(t._h),
    requiresGrad: (t) => native.requiresGrad(t._h),
    /**
     * `flat[offset : offset + prod(shape)].view(shape)`: shares `flat`'s storage (so it sees
     * memory `allocateStorage` gives back) and version counter. Make views while the
     * storage is allocated (libtorch checks a view's bounds against the storage).
     */
    view: (flat, offset, shape) => new Tensor(native.shardView(flat._h, offset, shape)),
    /** A new contiguous 1-D copy, made without autograd history (a buffer, not a graph node). */
    flatten: (t) => new Tensor(native.shardFlatten(t._h)),
    /** `dst.copy_(src)` without autograd (dtype converted); bumps `dst`'s storage's version, never a `setData` parameter's own. */
    copy: (dst, src) => native.shardCopy(dst._h, src._h),
    /** `dst += src` without autograd. */
    addInPlace: (dst, src) => native.shardAdd(dst._h, src._h),
    /** `t.zero_()` without autograd. */
    zero: (t) => native.shardZero(t._h),
    /**
     * Release `flat`'s memory: its StorageImpl keeps its identity with 0 bytes, so views,
     * `setData` parameters and autograd's saved tensors keep pointing at it. `flat` must be
     * its storage's only content (storage offset 0, as `flatten` or `empty` make). Only
     * sharding's own methods check for freed memory (and throw): any other op on a freed
     * tensor (forward, `.sum()`, …) reads a null pointer and crashes the process.
     */
    freeStorage: (flat) => native.freeStorage(flat._h),
    /** Memory for all of `flat` again, from the CPU allocator (counted in `memory.info`). */
    allocateStorage: (flat) => native.allocateStorage(flat._h),
    hasStorage: (flat) => native.hasStorage(flat._h),
    /**
     * `param.data = data`: the parameter keeps its object, version counter, requires_grad
     * and gradient-ready hooks. Keep the dtype and device: on libtorch 1.13 a change of either
     * resets the gradient accumulator, and hooks registered before stop firing.
     */
    setData: (param, data) => noGrad(() => native.setData(param._h, data._h)),
    grad: (param) => param.grad,
    setGrad: (param, grad) => native.setGrad(param._h, grad ? grad._h : null),
    /** `t.detach().requires_grad_(rg)`: a leaf sharing `t`'s memory (what an optimizer steps). */
    leafView: (t, requiresGrad) => new Tensor(native.leafView(t._h, requiresGrad)),
    /**
     * `t.register_hook`: `fn` runs synchronously on the JS thread when `t`'s gradient was
     * computed, before the backward of `t`'s producer. The registration holds `t` weakly.
     * A throw stops backward (backward throws, with `fn`'s error as `cause`).
     */
    addTensorGradHook: (t, fn) => {
      const remove = native.addTensorGradHook(t._h, () => untracked(fn));
      return remove ? { remove } : undefined;
    },
    /**
     * `fn` once after the outermost running backward finished (also when queued from a
     * nested backward, e.g. a checkpoint recomputation), before `backward()` returns.
     * Throws when no backward runs.
     */
    queueBackwardCallback: (fn) => native.queueBackwardCallback(() => untracked(fn)),
    isGradEnabled: () => native.isGradEnabled(),
    /**
     * Activation checkpointing of `module.forward` (with its forward hooks, which thus
     * run again inside backward). See {@link checkpointModule}.
     */
    checkpointModule: (module) => checkpointModule(module),
  };
}
