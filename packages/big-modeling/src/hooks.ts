/**
 * Hooks around a module's forward, as Accelerate's `hooks.py`: a
 * {@link ModelHook} runs before and after `forward`; {@link AlignDevicesHook}
 * moves inputs to the execution device and brings offloaded weights in just
 * before the forward and sends them back right after.
 * @module
 */
import { requireCapability, sendToDevice } from '@accelerate/core';
import { modelTensors, need, ownTensors, type AnyBackend } from './tree.js';
import type { OffloadedWeightsLoader } from './offload.js';

/**
 * Code run around a module's forward. Every method is optional.
 */
export interface ModelHook<M = any> {
  /** Called when the hook is attached; may return a replacement module. */
  initHook?(module: M): M | void;
  /** Called before forward with its arguments; may return new arguments. */
  preForward?(module: M, args: unknown[]): unknown[] | void;
  /** Called after forward; returns the (possibly replaced) output. */
  postForward?(module: M, output: unknown): unknown;
  /** Called when the hook is removed; may return a replacement module. */
  detachHook?(module: M): M | void;
}

/** Several hooks run one after the other (pre in order, post in order). */
export class SequentialHook<M = any> implements ModelHook<M> {
  readonly hooks: ReadonlyArray<ModelHook<M>>;
  constructor(...hooks: Array<ModelHook<M>>) {
    this.hooks = hooks;
  }
  initHook(module: M): M {
    for (const h of this.hooks) module = (h.initHook?.(module) as M | undefined) ?? module;
    return module;
  }
  preForward(module: M, args: unknown[]): unknown[] {
    for (const h of this.hooks) args = h.preForward?.(module, args) ?? args;
    return args;
  }
  postForward(module: M, output: unknown): unknown {
    for (const h of this.hooks) if (h.postForward) output = h.postForward(module, output);
    return output;
  }
  detachHook(module: M): M {
    for (const h of this.hooks) module = (h.detachHook?.(module) as M | undefined) ?? module;
    return module;
  }
}

interface Attached {
  hook: ModelHook;
  handle: { remove(): void };
}

const attached = new WeakMap<object, Attached>();

/** The hook attached to `module` by {@link addHookToModule}, if any (Accelerate's `module._hf_hook`). */
export function getModuleHook(module: unknown): ModelHook | undefined {
  return attached.get(module as object)?.hook;
}

/**
 * Attach `hook` to `module`. A hook already there is replaced, or with
 * `append` kept and followed by the new one (a {@link SequentialHook}).
 * Returns the module (as `initHook` left it).
 */
export function addHookToModule<M>(backend: AnyBackend, module: M, hook: ModelHook<M>, append = false): M {
  const add = need(backend, 'addForwardHooks', 'forward hooks');
  const prev = attached.get(module as object);
  if (prev) {
    prev.handle.remove();
    attached.delete(module as object);
    if (append) hook = new SequentialHook(prev.hook, hook);
  }
  const m = (hook.initHook?.(module) as M | undefined) ?? module;
  const handle = add(m, {
    pre: hook.preForward ? (args) => hook.preForward!(m, args) ?? undefined : undefined,
    post: hook.postForward ? (_args, out) => hook.postForward!(m, out) : undefined,
  });
  attached.set(m as object, { hook, handle });
  return m;
}

/** Remove the hook of `module` (and of all its descendants with `recurse`), calling its `detachHook`. */
export function removeHookFromModule<M>(backend: AnyBackend, module: M, recurse = false): M {
  const a = attached.get(module as object);
  if (a) {
    a.handle.remove();
    attached.delete(module as object);
    module = (a.hook.detachHook?.(module) as M | undefined) ?? module;
  }
  if (recurse) for (const [, c] of need(backend, 'namedChildren', 'removing hooks')(module)) removeHookFromModule(backend, c, true);
  return module;
}

/** Apply `f` to every backend tensor inside nested arrays and plain objects; other values are kept. */
export function mapTensors(backend: AnyBackend, value: unknown, f: (t: unknown) => unknown): unknown {
  const isTensor: boolean = backend.isTensor(value);
  if (isTensor) return f(value);
  if (Array.isArray(value)) return value.map((v) => mapTensors(backend, v, f));
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapTensors(backend, v, f)]));
  }
  return value;
}

function firstTensorDevice(backend: AnyBackend, value: unknown): string | undefined {
  let found: string | undefined;
  mapTensors(backend, value, (t) => {
    found ??= backend.device(t);
    return t;
  });
  return found;
}

/** One tensor an {@link AlignDevicesHook} manages: where it lives and its key in the weights map. */
export interface HookedTensor {
  /** Module holding the tensor. */
  module: unknown;
  /** Name inside that module. */
  local: string;
  /** Key in the weights map. */
  key: string;
}

/** Options of {@link AlignDevicesHook}. */
export interface AlignDevicesHookOptions {
  /** Device the module runs on (backend name: `cpu`, `cuda:0`); inputs are moved there. Undefined: inputs stay. */
  executionDevice?: string;
  /** Tensors offloaded between forwards: set to `meta` after, brought from `weightsMap` before. */
  offloaded?: HookedTensor[];
  /** Where offloaded tensors are read from. */
  weightsMap?: OffloadedWeightsLoader;
  /** Move the outputs back to the device of the first input (set on the model's root). */
  ioSameDevice?: boolean;
}

/**
 * Moves inputs to the execution device, brings offloaded weights in before
 * forward (from memory, or read from disk) and puts `meta` placeholders back
 * after it, so an offloaded module holds its weights only while it runs.
 */
export class AlignDevicesHook implements ModelHook {
  private inputDevice: string | undefined;
  readonly options: AlignDevicesHookOptions;

  constructor(
    private readonly backend: AnyBackend,
    options: AlignDevicesHookOptions = {},
  ) {
    this.options = options;
    if (options.offloaded?.length && !options.weightsMap) throw new Error('AlignDevicesHook: offloaded tensors need a weightsMap to be read from.');
  }

  /** Replace the offloaded tensors by `meta` placeholders (memory released once nothing else holds them). */
  initHook(module: unknown): unknown {
    // The module's original tensors may be shared (ties, user references): leave them to the GC.
    this.offload(false);
    return module;
  }

  private offload(disposeOld: boolean): void {
    const b = this.backend;
    const set = need(b, 'setModuleTensor', 'offloading weights');
    for (const t of this.options.offloaded ?? []) {
      const cur = currentTensor(b, t);
      if (b.device(cur) === 'meta') continue;
      const meta = b.toDevice(cur, 'meta');
      // Tensors put in by preForward are this hook's own: free them now, not at the next GC.
      set(t.module, t.local, meta, { disposeOld });
      if (meta !== cur) b.dispose?.(meta);
    }
  }

  preForward(_module: unknown, args: unknown[]): unknown[] {
    const b = this.backend;
    const { executionDevice, ioSameDevice, offloaded, weightsMap } = this.options;
    if (ioSameDevice) this.inputDevice = firstTensorDevice(b, args);
    if (offloaded?.length) {
      const set = need(b, 'setModuleTensor', 'offloading weights');
      for (const t of offloaded) {
        const w = weightsMap!.get(t.key);
        const fresh = weightsMap!.isFresh(t.key);
        const dev = executionDevice ?? 'cpu';
        const v = b.device(w) === dev ? w : b.toDevice(w, dev);
        set(t.module, t.local, v);
        // The module now holds its own reference; drop ours when we made the tensor.
        if (v !== w) {
          b.dispose?.(v);
          if (fresh) b.dispose?.(w);
        } else if (fresh) b.dispose?.(w);
      }
    }
    return executionDevice ? sendToDevice(args, executionDevice, b) : args;
  }

  postForward(_module: unknown, output: unknown): unknown {
    this.offload(true);
    if (this.options.ioSameDevice && this.inputDevice !== undefined) return sendToDevice(output, this.inputDevice, this.backend);
    return output;
  }

  /** Put the weights back in the module (on the cpu) when the hook is removed. */
  detachHook(module: unknown): unknown {
    const set = need(this.backend, 'setModuleTensor', 'offloading weights');
    for (const t of this.options.offloaded ?? []) {
      const w = this.options.weightsMap!.get(t.key);
      set(t.module, t.local, w, { disposeOld: true });
      if (this.options.weightsMap!.isFresh(t.key)) this.backend.dispose?.(w);
    }
    return module;
  }
}

function currentTensor(backend: AnyBackend, t: HookedTensor): unknown {
  const own = ownTensors(backend, t.module);
  const p = own.parameters.find(([n]) => n === t.local);
  if (p) return p[1];
  const buf = own.buffers.find((x) => x.name === t.local);
  if (buf) return buf.tensor;
  throw new Error(`the module has no tensor ${JSON.stringify(t.local)}.`);
}

/**
 * Returned by {@link cpuOffloadWithHook}: keeps its model on the execution
 * device after the first forward until {@link UserCpuOffloadHook.offload}.
 */
export class UserCpuOffloadHook<M = unknown> {
  constructor(
    private readonly backend: AnyBackend,
    readonly model: M,
    private readonly hook: ModelHook<M>,
  ) {}
  /** Move the model back to the cpu. */
  offload(): void {
    requireCapability(this.backend, 'models', 'UserCpuOffloadHook.offload').moveModel(this.model, 'cpu');
  }
  /** Detach the hook; the model stays where it is. */
  remove(): void {
    removeHookFromModule(this.backend, this.model);
  }
  /** @internal */
  get inner(): ModelHook<M> {
    return this.hook;
  }
}

/** Tensors of `module` to offload: own (or the whole subtree), parameters and, with `buffers`, persistent buffers. */
export function tensorsToOffload(backend: AnyBackend, module: unknown, prefix: string, options: { recurse?: boolean; buffers?: boolean } = {}): HookedTensor[] {
  const list = options.recurse
    ? modelTensors(backend, module, { buffers: options.buffers ?? false }).filter((t) => t.persistent)
    : (() => {
        const own = ownTensors(backend, module);
        return [
          ...own.parameters.map(([n]) => ({ name: n, local: n, module })),
          ...(options.buffers ? own.buffers.filter((b) => b.persistent).map((b) => ({ name: b.name, local: b.name, module })) : []),
        ];
      })();
  return list.map((t) => ({ module: t.module, local: t.local, key: prefix ? `${prefix}.${t.name}` : t.name }));
}
