/**
 * `nn.Module`: the base class of models, as `torch.nn.Module`. Subclass it, keep
 * layers and parameters in fields (or register them explicitly), implement `forward`.
 * @module
 */
import { HostTensor } from '@accelerate/core';
import { native, opId } from '../native.js';
import { fromTypedArray, keep, noGrad, Tensor, type DType } from '../tensor.js';

/**
 * A tensor that is a module parameter: a leaf that requires grad. It is never
 * freed by a `tidy` scope (modules own their parameters).
 */
export class Parameter extends Tensor {
  constructor(data: Tensor, requiresGrad = true) {
    // Under initOnDevice (big modeling) the parameter is created on that device
    // (`meta`: shape and dtype only, no memory); else a fresh leaf sharing data's storage.
    const device = creationDevice.device;
    const src = device !== null && data.device !== device ? data.to({ device }) : data;
    super(native.op(opId('detach'), src._h));
    if (src !== data) src.dispose();
    keep(this);
    native.setRequiresGrad(this._h, requiresGrad);
  }
}

/**
 * Device new parameters (and, with `includeBuffers`, buffers) are created on,
 * set by `LibtorchBackend.initOnDevice` for the duration of a callback.
 * @internal
 */
export const creationDevice: { device: string | null; includeBuffers: boolean } = { device: null, includeBuffers: false };

/** Called before `forward` with its arguments; may return replacement arguments. */
export type ForwardPreHook = (module: Module, args: unknown[]) => unknown[] | void;
/** Called after `forward`; may return a replacement output. */
export type ForwardHook = (module: Module, args: unknown[], output: unknown) => unknown;

/** Removes a registered hook. */
export interface RemovableHandle {
  remove(): void;
}

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Require the keys to match exactly (default true). */
  strict?: boolean;
}

const INTERNAL = new Set(['training', '_parameters', '_buffers', '_modules', '_preHooks', '_hooks', '_nonPersistent', '_checkpointed', 'forward']);

/**
 * Base class of all models. Parameters, buffers and submodules are found in the
 * object's fields (declaration order) or registered with the `register*` methods.
 */
export abstract class Module {
  /** Training mode (dropout active, batch-norm uses batch statistics). */
  training = true;
  /** @internal */ _parameters = new Map<string, Parameter | null>();
  /** @internal */ _buffers = new Map<string, Tensor | null>();
  /** @internal */ _nonPersistent = new Set<string>();
  /** @internal */ _modules = new Map<string, Module | null>();
  /** @internal */ _preHooks: ForwardPreHook[] = [];
  /** @internal */ _hooks: ForwardHook[] = [];

  /** The computation. Call it directly: `model.forward(x)`. */
  abstract forward(...args: any[]): any;

  /** Register (or replace, with null to clear) a parameter under `name`; also sets `this[name]`. */
  registerParameter<P extends Parameter | null>(name: string, param: P): P {
    this._parameters.set(name, param);
    (this as Record<string, unknown>)[name] = param;
    return param;
  }
  /** Register a buffer (a tensor saved in stateDict but not trained); `persistent: false` keeps it out of stateDict. */
  registerBuffer<T extends Tensor | null>(name: string, tensor: T, persistent = true): T {
    if (tensor && creationDevice.device !== null && creationDevice.includeBuffers && tensor.device !== creationDevice.device) {
      tensor = tensor.to({ device: creationDevice.device }) as T;
    }
    if (tensor) keep(tensor);
    this._buffers.set(name, tensor);
    if (!persistent) this._nonPersistent.add(name);
    (this as Record<string, unknown>)[name] = tensor;
    return tensor;
  }
  /** Register a submodule. */
  registerModule<M extends Module | null>(name: string, module: M): M {
    this._modules.set(name, module);
    (this as Record<string, unknown>)[name] = module;
    return module;
  }

  /** @internal own parameters and children, from fields and registrations. */
  private _own(): { params: Array<[string, Parameter]>; buffers: Array<[string, Tensor]>; children: Array<[string, Module]> } {
    const params: Array<[string, Parameter]> = [];
    const buffers: Array<[string, Tensor]> = [];
    const children: Array<[string, Module]> = [];
    const seen = new Set<string>();
    // A field aliasing something registered under another name (e.g. `inProjWeight`
    // for `in_proj_weight`) is not a second entry.
    const registered = new Map<unknown, string>();
    for (const m of [this._parameters, this._buffers, this._modules]) for (const [k, v] of m) if (v) registered.set(v, k);
    for (const [k, v] of Object.entries(this)) {
      if (INTERNAL.has(k)) continue;
      const regName = registered.get(v);
      if (regName !== undefined && regName !== k) continue;
      if (this._buffers.has(k)) {
        const b = this._buffers.get(k);
        if (b) buffers.push([k, b]);
      } else if (v instanceof Parameter) params.push([k, v]);
      else if (v instanceof Module) children.push([k, v]);
      seen.add(k);
    }
    for (const [k, v] of this._parameters) if (v && !seen.has(k)) params.push([k, v]);
    for (const [k, v] of this._buffers) if (v && !seen.has(k)) buffers.push([k, v]);
    for (const [k, v] of this._modules) if (v && !seen.has(k)) children.push([k, v]);
    return { params, buffers, children };
  }

  /** Direct submodules by name. */
  namedChildren(): Array<[string, Module]> {
    return this._own().children;
  }
  children(): Module[] {
    return this.namedChildren().map(([, m]) => m);
  }
  /** This module and every descendant, by dotted name ('' for this one). */
  namedModules(prefix = ''): Array<[string, Module]> {
    const out: Array<[string, Module]> = [[prefix, this]];
    for (const [n, m] of this.namedChildren()) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }
  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }
  /** Every parameter by dotted name (`layer1.weight`), shared parameters once. */
  namedParameters(prefix = '', recurse = true): Array<[string, Parameter]> {
    const out: Array<[string, Parameter]> = [];
    const seen = new Set<Parameter>();
    const visit = (m: Module, p: string) => {
      const own = m._own();
      for (const [n, t] of own.params) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([p ? `${p}.${n}` : n, t]);
      }
      if (recurse) for (const [n, c] of own.children) visit(c, p ? `${p}.${n}` : n);
    };
    visit(this, prefix);
    return out;
  }
  parameters(recurse = true): Parameter[] {
    return this.namedParameters('', recurse).map(([, p]) => p);
  }
  /** Every buffer by dotted name. */
  namedBuffers(prefix = ''): Array<[string, Tensor]> {
    const out: Array<[string, Tensor]> = [];
    for (const [mp, m] of this.namedModules(prefix)) for (const [n, b] of m._own().buffers) out.push([mp ? `${mp}.${n}` : n, b]);
    return out;
  }
  buffers(): Tensor[] {
    return this.namedBuffers().map(([, b]) => b);
  }

  /** Set training mode on this module and all descendants. */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Call `fn` on every descendant and this module (children first). */
  apply(fn: (m: Module) => void): this {
    for (const c of this.children()) c.apply(fn);
    fn(this);
    return this;
  }
  /** Clear (or zero) every parameter's gradient. */
  zeroGrad(setToNone = true): void {
    for (const p of this.parameters()) {
      if (setToNone) native.setGrad(p._h, null);
      else {
        const g = p.grad;
        if (g) {
          g.zero_();
          g.dispose();
        }
      }
    }
  }

  /**
   * Move and/or cast parameters and buffers in place (objects keep their identity, as
   * `param.data = ...` in PyTorch). Floating dtypes only are cast. With `skipMeta`,
   * tensors on the `meta` device (no data to move) are left as they are.
   */
  to(target: string | { device?: string; dtype?: DType }, options: { skipMeta?: boolean } = {}): this {
    const o = typeof target === 'string' ? (isDTypeName(target) ? { dtype: target as DType } : { device: target }) : target;
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        if (options.skipMeta && t.device === 'meta') continue;
        const isFloat = /^(float|bfloat)/.test(t.dtype);
        const dtype = o.dtype && isFloat ? o.dtype : t.dtype;
        if (t.dtype === dtype && (!o.device || t.device === canonicalDevice(o.device))) continue;
        const moved = t.to({ device: o.device ?? t.device, dtype });
        native.setData(t._h, moved._h);
        moved.dispose();
        const g = t.grad;
        if (g) {
          const mg = g.to({ device: o.device ?? g.device, dtype });
          t.grad = mg;
          mg.dispose();
          g.dispose();
        }
      }
    });
    return this;
  }

  /**
   * Parameters and persistent buffers by dotted name (tensors share storage with
   * the module, detached). A parameter or buffer registered under several names
   * (tied weights, e.g. an embedding reused as the LM head) appears under each
   * name as the very same Tensor object, so savers can tell it is one tensor and
   * write it once (see {@link Module.tiedParameters}).
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    // One detached view per tensor object: detaching per name would hide the tie.
    const detached = new Map<Tensor, Tensor>();
    const view = (t: Tensor) => {
      let d = detached.get(t);
      if (!d) detached.set(t, (d = t.detach()));
      return d;
    };
    for (const [mp, m] of this.namedModules()) {
      const own = m._own();
      for (const [n, p] of own.params) out[mp ? `${mp}.${n}` : n] = view(p);
      for (const [n, b] of own.buffers) if (!m._nonPersistent.has(n)) out[mp ? `${mp}.${n}` : n] = view(b);
    }
    return out;
  }

  /**
   * Groups of state-dict names that are one tensor object (tied weights), each
   * group in state-dict order; the first name is the one a checkpoint keeps.
   * Empty when nothing is tied.
   */
  tiedParameters(): string[][] {
    const byTensor = new Map<Tensor, string[]>();
    for (const [name, t] of this._stateTargets()) {
      const names = byTensor.get(t) ?? [];
      names.push(name);
      byTensor.set(t, names);
    }
    return [...byTensor.values()].filter((names) => names.length > 1);
  }

  /** @internal parameters and persistent buffers by dotted name (the live tensors, not detached). */
  private _stateTargets(): Map<string, Tensor> {
    const targets = new Map<string, Tensor>();
    for (const [mp, m] of this.namedModules()) {
      const own = m._own();
      for (const [n, p] of own.params) targets.set(mp ? `${mp}.${n}` : n, p);
      for (const [n, b] of own.buffers) if (!m._nonPersistent.has(n)) targets.set(mp ? `${mp}.${n}` : n, b);
    }
    return targets;
  }

  /**
   * Copy `state` into parameters and buffers. With `strict` (default) missing or
   * unexpected keys throw; shape mismatches always throw. Accepts core HostTensors.
   * Returns the missing and unexpected keys.
   */
  loadStateDict(state: Record<string, Tensor | HostTensor>, options: LoadStateDictOptions = {}): { missingKeys: string[]; unexpectedKeys: string[] } {
    const strict = options.strict ?? true;
    const targets = this._stateTargets();
    // A tied name whose tensor is loaded under another of its names is not missing:
    // checkpoints keep one name per tied tensor (as Accelerate's save_model does).
    const loadedObjects = new Set<Tensor>();
    for (const [k, t] of targets) if (k in state) loadedObjects.add(t);
    const missingKeys = [...targets].filter(([k, t]) => !(k in state) && !loadedObjects.has(t)).map(([k]) => k);
    const unexpectedKeys = Object.keys(state).filter((k) => !targets.has(k));
    if (strict && (missingKeys.length || unexpectedKeys.length)) {
      throw new Error(
        `loadStateDict (strict): ${missingKeys.length ? `missing keys [${missingKeys.join(', ')}]` : ''}${missingKeys.length && unexpectedKeys.length ? '; ' : ''}${unexpectedKeys.length ? `unexpected keys [${unexpectedKeys.join(', ')}]` : ''}. Pass { strict: false } to load a partial state.`,
      );
    }
    for (const [k, dst] of targets) {
      const v = state[k];
      if (v === undefined) continue;
      const src = v instanceof HostTensor ? fromTypedArray(v.data as never, [...v.shape], v.dtype as DType) : (v as Tensor);
      const a = dst.shape;
      const b = src.shape;
      if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
        if (src !== v) src.dispose();
        throw new Error(`loadStateDict: size mismatch for ${k}: the checkpoint has shape [${b.join(', ')}], the model [${a.join(', ')}]`);
      }
      native.copyNoGrad(dst._h, src._h);
      if (src !== v) src.dispose();
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Run `hook(module, args)` before every forward. */
  registerForwardPreHook(hook: ForwardPreHook): RemovableHandle {
    this._preHooks.push(hook);
    this._installHooks();
    return { remove: () => this._removeHook(this._preHooks, hook) };
  }
  /** Run `hook(module, args, output)` after every forward. */
  registerForwardHook(hook: ForwardHook): RemovableHandle {
    this._hooks.push(hook);
    this._installHooks();
    return { remove: () => this._removeHook(this._hooks, hook) };
  }
  private _removeHook(list: unknown[], hook: unknown): void {
    const i = list.indexOf(hook);
    if (i >= 0) list.splice(i, 1);
  }
  /**
   * @internal hooks wrap `forward` on the instance only once one is registered (no cost
   * otherwise); the unhooked forward is kept as `_innerForward`.
   */
  _installHooks(): void {
    if (Object.prototype.hasOwnProperty.call(this, '__hooked')) return;
    const inner = this.forward;
    Object.defineProperty(this, '__hooked', { value: true });
    Object.defineProperty(this, '_innerForward', { value: inner, configurable: true, writable: true });
    this.forward = (...args: unknown[]) => this._runHooked(args, (a) => inner.apply(this, a));
  }
  /** @internal the forward pre-hooks, `body(args)`, then the forward hooks. */
  _runHooked(args: unknown[], body: (args: unknown[]) => unknown): unknown {
    for (const pre of this._preHooks) {
      const r = pre(this, args);
      if (r !== undefined) args = r;
    }
    let out = body(args);
    for (const post of this._hooks) {
      const r = post(this, args, out);
      if (r !== undefined) out = r;
    }
    return out;
  }
  /** @internal set while activation checkpointing wraps `forward` (keeps fused Sequential paths from bypassing it). */
  _checkpointed = false;
  /** True when forward hooks (or checkpointing) are installed (fused Sequential forward is then skipped). */
  hasHooks(): boolean {
    return this._preHooks.length > 0 || this._hooks.length > 0 || this._checkpointed;
  }

  /** A short description, as `print(model)`. */
  toString(): string {
    const children = this.namedChildren();
    const head = `${this.constructor.name}(${this.extraRepr()}`;
    if (!children.length) return `${head})`;
    const body = children.map(([n, m]) => `  (${n}): ${m.toString().split('\n').join('\n  ')}`).join('\n');
    return `${head}\n${body}\n)`;
  }
  /** Extra text inside {@link toString}'s parentheses. */
  extraRepr(): string {
    return '';
  }
}

function isDTypeName(s: string): boolean {
  return /^(float|bfloat|int|uint|bool)/.test(s);
}

function canonicalDevice(d: string): string {
  return d === 'cuda' ? 'cuda:0' : d;
}
