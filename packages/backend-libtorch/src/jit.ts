/**
 * TorchScript, as `torch.jit`: load a module saved from Python with
 * `torch.jit.save`, run it, and train it with this package's optimizers.
 *
 * ```ts
 * const net = torch.jit.load('model.pt');            // a Module
 * const opt = new torch.optim.AdamW(net.parameters(), { lr: 1e-3 });
 * const loss = nn.functional.crossEntropy(net.forward(x), y);
 * loss.backward(); opt.step();                       // updates the script module's own weights
 * net.save('trained.pt');                            // torch.jit.load works on it in Python
 * ```
 *
 * {@link trace} goes the other way: it records a JS {@link Module}'s forward into a
 * TorchScript module that Python's `torch.jit.load` runs.
 * @module
 */
import { existsSync } from 'node:fs';
import { native, type NativeHandle } from './native.js';
import { Module, Parameter } from './nn/module.js';
import { keep, Tensor, tidy } from './tensor.js';

/** The C++ wrapper of a `torch::jit::Module` (native/jit.cc). */
interface NativeScriptModule {
  run(method: string, args: unknown[]): unknown;
  schema(method: string): string;
  methodNames(): string[];
  namedParameters(): Array<[string, NativeHandle]>;
  namedBuffers(): Array<[string, NativeHandle]>;
  train(mode: boolean): void;
  isTraining(): boolean;
  save(path: string): void;
}

const NativeScriptModuleCtor = (native as unknown as { NativeScriptModule: new (path: string, device?: string) => NativeScriptModule }).NativeScriptModule;

/** A native handle (as opposed to the plain arrays/objects around it in a result). */
function isHandle(v: unknown): v is NativeHandle {
  return typeof v === 'object' && v !== null && typeof (v as NativeHandle).isDisposed === 'function' && typeof (v as NativeHandle).dispose === 'function';
}

function toNative(v: unknown): unknown {
  if (v instanceof Tensor) return v._h;
  if (Array.isArray(v)) return v.map(toNative);
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toNative(x)]));
  }
  return v;
}

function fromNative(v: unknown): unknown {
  if (isHandle(v)) return new Tensor(v);
  if (Array.isArray(v)) return v.map(fromNative);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromNative(x)]));
  return v;
}

/**
 * The script module's own tensor as a Parameter: no copy and no detach, so gradients
 * computed through the scripted forward land on it and optimizer steps change what
 * the script module computes with.
 */
function adoptParameter(h: NativeHandle): Parameter {
  const t = keep(new Tensor(h));
  Object.setPrototypeOf(t, Parameter.prototype);
  return t as Parameter;
}

/** Holds a level of the script module's hierarchy so parameter names stay dotted as in Python. */
class ScriptSubmodule extends Module {
  constructor(private readonly path: string) {
    super();
  }
  forward(): never {
    throw new Error(`'${this.path}' is part of a TorchScript module: call forward on the module returned by jit.load`);
  }
}

/**
 * A TorchScript module loaded with {@link load}. Its parameters and buffers appear
 * under Python's names (`namedParameters`, `stateDict`, `loadStateDict` work as for
 * any {@link Module}); `forward` and {@link ScriptModule.runMethod} run the compiled code.
 */
export class ScriptModule extends Module {
  /** @internal */
  readonly _script: NativeScriptModule;

  /** @internal use {@link load} */
  constructor(script: NativeScriptModule) {
    super();
    this._script = script;
    for (const [name, h] of script.namedParameters()) {
      const [owner, leaf] = this.ownerOf(name);
      owner.registerParameter(leaf, adoptParameter(h));
    }
    for (const [name, h] of script.namedBuffers()) {
      const [owner, leaf] = this.ownerOf(name);
      owner.registerBuffer(leaf, new Tensor(h));
    }
    this.training = script.isTraining();
  }

  private ownerOf(dotted: string): [Module, string] {
    const parts = dotted.split('.');
    let m: Module = this;
    for (let i = 0; i < parts.length - 1; i++) {
      const existing = m._modules.get(parts[i]);
      m = existing ?? m.registerModule(parts[i], new ScriptSubmodule(parts.slice(0, i + 1).join('.')));
    }
    return [m, parts[parts.length - 1]];
  }

  /** Run the scripted `forward`. Arguments are converted by its TorchScript signature. */
  forward(...args: unknown[]): any {
    return this.runMethod('forward', ...args);
  }

  /**
   * Run any exported method (`@torch.jit.export`). Tensors, numbers, booleans, strings,
   * null (None), arrays (List/Tuple) and plain objects (Dict[str, T]) are accepted;
   * results come back the same way, tensors as {@link Tensor}s.
   */
  runMethod(name: string, ...args: unknown[]): any {
    // A parent's train()/eval() sets `training` on every descendant without calling train().
    if (this._script.isTraining() !== this.training) this._script.train(this.training);
    return fromNative(this._script.run(name, args.map(toNative)));
  }

  /** Training mode here and in the compiled code (dropout, batch norm). */
  override train(mode = true): this {
    super.train(mode);
    this._script.train(mode);
    return this;
  }

  /** Names of the module's methods (`forward` and exported ones). */
  methodNames(): string[] {
    return this._script.methodNames();
  }

  /** TorchScript signature of a method, e.g. `forward(__torch__.Net self, Tensor x) -> Tensor`. */
  schema(method = 'forward'): string {
    return this._script.schema(method);
  }

  /** Save as `torch.jit.save` does, with the current (e.g. trained) weights. */
  save(path: string): void {
    this._script.save(path);
  }
}

/**
 * Load a TorchScript module (`torch.jit.load`). `device` moves it on load (`cpu`,
 * `cuda:0`). Files saved by a newer PyTorch than this addon's libtorch may not load.
 */
export function load(path: string, options: { device?: string } = {}): ScriptModule {
  if (!existsSync(path)) throw new Error(`jit.load: no file at ${path}; pass the path of a module saved with torch.jit.save`);
  try {
    return new ScriptModule(options.device ? new NativeScriptModuleCtor(path, options.device) : new NativeScriptModuleCtor(path));
  } catch (e) {
    const err = e as Error;
    err.message = `jit.load(${path}): ${err.message}`;
    throw err;
  }
}

/** What the native tracer needs of one module level (native/jit.cc BuildModule). */
interface ModuleSpec {
  className: string;
  training: boolean;
  params: Array<[string, NativeHandle]>;
  buffers: Array<[string, NativeHandle]>;
  children: Array<[string, ModuleSpec]>;
}

const nativeTrace = (native as unknown as {
  jitTrace(spec: ModuleSpec, inputs: NativeHandle[], fn: (inputs: NativeHandle[]) => NativeHandle | NativeHandle[], argNames: string[]): NativeScriptModule;
}).jitTrace;

function specOf(m: Module, seen: Set<Module>): ModuleSpec {
  if (seen.has(m)) throw new Error(`jit.trace: module ${m.constructor.name} appears twice in the hierarchy; TorchScript modules must form a tree`);
  seen.add(m);
  const own = (m as unknown as { _own(): { params: Array<[string, Tensor]>; buffers: Array<[string, Tensor]>; children: Array<[string, Module]> } })._own();
  return {
    className: m.constructor.name || 'Module',
    training: m.training,
    params: own.params.map(([n, t]) => [n, t._h]),
    buffers: own.buffers.map(([n, t]) => [n, t._h]),
    children: own.children.map(([n, c]) => [n, specOf(c, seen)]),
  };
}

/**
 * Trace `module.forward` on `exampleInputs` into a TorchScript module, as Python's
 * `torch.jit.trace(module, example_inputs)` does: every operator the forward runs is
 * recorded by libtorch's tracer (the ops reach the c10 dispatcher, so nothing JS-specific
 * ends up in the graph), and the graph becomes the `forward` of a new script module whose
 * parameters and buffers are registered under the JS module's names (nested submodules,
 * so Python's `named_parameters()` lists the same dotted names as
 * {@link Module.namedParameters}).
 *
 * ```ts
 * model.eval();                                         // trace inference behaviour (dropout off)
 * const traced = torch.jit.trace(model, torch.randn([8, 784]));
 * traced.save('model.pt');                              // Python: torch.jit.load('model.pt')(x)
 * ```
 *
 * Like Python's tracer it records one execution: control flow that depends on data is
 * frozen to the branch the example took, and sizes the JS code reads (`x.shape`) become
 * constants, so the traced module is valid for inputs of the example's shapes.
 * Tensors made from JS data inside `forward` become constants of the graph; tensors
 * that require grad must be registered parameters (or the trace fails).
 * Training mode is recorded too (call `eval()` first for inference).
 *
 * Sharing: the returned module's parameters and buffers are the SAME tensors as the JS
 * module's (same storage, no copy): an optimizer step on either one changes both, and
 * `save` writes the current values.
 *
 * @param exampleInputs the positional tensor arguments of `forward`.
 * @returns a {@link ScriptModule}; its forward returns a Tensor, or an array of Tensors
 *   when the JS forward returned an array (a tuple in TorchScript).
 */
export function trace(module: Module, exampleInputs: Tensor | readonly Tensor[]): ScriptModule {
  const inputs = exampleInputs instanceof Tensor ? [exampleInputs] : [...exampleInputs];
  for (const t of inputs) if (!(t instanceof Tensor)) throw new TypeError('jit.trace: exampleInputs must be a Tensor or an array of Tensors');
  const spec = specOf(module, new Set());
  const run = (handles: NativeHandle[]): NativeHandle | NativeHandle[] => {
    const out: unknown = module.forward(...handles.map((h) => new Tensor(h)));
    if (out instanceof Tensor) return out._h;
    if (Array.isArray(out) && out.every((o) => o instanceof Tensor)) return out.map((o: Tensor) => o._h);
    throw new TypeError('jit.trace: forward must return a Tensor or an array of Tensors');
  };
  let script: NativeScriptModule | undefined;
  // The scope frees every intermediate handle of the traced forward (the graph does not need them).
  tidy(() => {
    try {
      script = nativeTrace(spec, inputs.map((t) => t._h), run, []);
    } catch (e) {
      const err = e as Error;
      err.message = `jit.trace(${module.constructor.name}): ${err.message}`;
      throw err;
    }
  });
  return new ScriptModule(script!);
}
