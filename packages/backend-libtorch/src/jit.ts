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
 * @module
 */
import { existsSync } from 'node:fs';
import { native, type NativeHandle } from './native.js';
import { Module, Parameter } from './nn/module.js';
import { keep, Tensor } from './tensor.js';

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
