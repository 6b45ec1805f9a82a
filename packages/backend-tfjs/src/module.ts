/**
 * `TfjsModule`: a small PyTorch-style container of named `tf.Variable`s for
 * models written by hand, with stable, dotted parameter names
 * (`encoder.fc1.weight`) that do not depend on how many variables the process
 * created before (tfjs's own variable names do).
 * @module
 */
import { setGrad, startRecording } from './autograd.js';
import { randomUniform } from './rng.js';
import { tf } from './tf.js';

const RECORDING_FORWARD = Symbol('accelerate.tfjs.recordingForward');

/**
 * Base class for hand-written tfjs models. Declare parameters with
 * {@link TfjsModule.param}, non-trainable state with {@link TfjsModule.buffer}
 * and children with {@link TfjsModule.module}; override `forward`.
 *
 * In training mode (the default) `forward` starts the gradient tape, so a loss
 * computed from its output can be passed to `backward` as a tensor; after
 * {@link TfjsModule.eval} nothing is recorded.
 *
 * ```ts
 * class MLP extends TfjsModule {
 *   fc1 = this.module('fc1', new Linear(784, 128));
 *   fc2 = this.module('fc2', new Linear(128, 10));
 *   override forward(x: tf.Tensor) { return this.fc2.forward(tf.relu(this.fc1.forward(x))); }
 * }
 * ```
 */
export class TfjsModule {
  /** Training mode (dropout on, tape recording on). */
  training = true;
  private readonly params = new Map<string, tf.Variable>();
  private readonly buffers = new Map<string, tf.Variable>();
  private readonly children = new Map<string, TfjsModule>();

  constructor() {
    // Wrap the subclass's forward on the instance, so every call records while training.
    installRecordingForward(this);
  }

  /** The computation; subclasses override it. */
  forward(..._inputs: unknown[]): unknown {
    throw new Error(`${this.constructor.name} has no forward(): override forward(...) in your TfjsModule subclass.`);
  }

  /** Same as `forward` (PyTorch's `module(x)`). */
  call(...inputs: unknown[]): unknown {
    return this.forward(...inputs);
  }

  private checkName(name: string, what: string): void {
    if (!/^[A-Za-z0-9_]+$/.test(name)) {
      throw new Error(`${what} name ${JSON.stringify(name)} must be letters, digits or _ (dots separate modules; use module() for nesting).`);
    }
    if (this.params.has(name) || this.buffers.has(name) || this.children.has(name)) {
      throw new Error(`${this.constructor.name} already has a parameter, buffer or module named ${JSON.stringify(name)}.`);
    }
  }

  /** Register a trainable parameter initialised from `init` (the module owns the variable). */
  param(name: string, init: tf.Tensor | (() => tf.Tensor), trainable = true): tf.Variable {
    this.checkName(name, 'Parameter');
    const v = makeVariable(init, trainable);
    this.params.set(name, v);
    return v;
  }

  /** Register non-trainable state that belongs in the state dict (running statistics…). */
  buffer(name: string, init: tf.Tensor | (() => tf.Tensor)): tf.Variable {
    this.checkName(name, 'Buffer');
    const v = makeVariable(init, false);
    this.buffers.set(name, v);
    return v;
  }

  /** Register a child module; its names are prefixed with `name.`. */
  module<C extends TfjsModule>(name: string, child: C): C {
    this.checkName(name, 'Module');
    this.children.set(name, child);
    return child;
  }

  /** Trainable parameters (and frozen ones registered with `trainable = false`), by dotted name, in registration order. */
  namedParameters(prefix = ''): Array<[string, tf.Variable]> {
    const out: Array<[string, tf.Variable]> = [];
    for (const [n, v] of this.params) out.push([prefix + n, v]);
    for (const [n, c] of this.children) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** Buffers by dotted name. */
  namedBuffers(prefix = ''): Array<[string, tf.Variable]> {
    const out: Array<[string, tf.Variable]> = [];
    for (const [n, v] of this.buffers) out.push([prefix + n, v]);
    for (const [n, c] of this.children) out.push(...c.namedBuffers(`${prefix}${n}.`));
    return out;
  }

  /** Parameters' variables. */
  parameters(): tf.Variable[] {
    return this.namedParameters().map(([, v]) => v);
  }

  /** Parameters and buffers by name (the live variables, not copies). */
  stateDict(): Record<string, tf.Variable> {
    return Object.fromEntries([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /** Set training mode on this module and its children. */
  train(mode = true): this {
    this.training = mode;
    for (const c of this.children.values()) c.train(mode);
    return this;
  }

  /** Evaluation mode: `train(false)`. */
  eval(): this {
    return this.train(false);
  }

  /** Free every variable and its stored gradient. */
  dispose(): void {
    for (const v of [...this.params.values(), ...this.buffers.values()]) {
      setGrad(v, null);
      v.dispose();
    }
    for (const c of this.children.values()) c.dispose();
  }
}

/** Install the recording wrapper around the instance's forward once the subclass's fields exist. */
function installRecordingForward(m: TfjsModule): void {
  // The subclass's `forward` lives on its prototype, which is already in place in the base constructor.
  const proto = Object.getPrototypeOf(m) as { forward: (...a: unknown[]) => unknown };
  const inner = proto.forward;
  if ((inner as unknown as Record<symbol, boolean>)[RECORDING_FORWARD]) return;
  const wrapped = function (this: TfjsModule, ...inputs: unknown[]) {
    if (this.training) startRecording();
    return inner.apply(this, inputs);
  };
  Object.defineProperty(wrapped, RECORDING_FORWARD, { value: true });
  Object.defineProperty(m, 'forward', { value: wrapped, writable: true, configurable: true });
}

function makeVariable(init: tf.Tensor | (() => tf.Tensor), trainable: boolean): tf.Variable {
  const t = typeof init === 'function' ? tf.tidy(init) : init;
  if (t.dtype !== 'float32' && trainable) {
    throw new Error(`A trainable parameter must be float32 (tfjs differentiates float32 only), got ${t.dtype}.`);
  }
  const v = tf.variable(t, trainable);
  if (typeof init === 'function') t.dispose();
  return v;
}

/**
 * A fully connected layer in PyTorch's layout: `weight` is `[out, in]`,
 * `bias` is `[out]`, `y = x W^T + b`, initialised like `torch.nn.Linear`
 * (uniform in ±1/√in, from this package's seeded generator). Its state dict
 * loads into a libtorch `nn.Linear` as it is.
 */
export class Linear extends TfjsModule {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | undefined;

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: { bias?: boolean } = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param('weight', () => randomUniform([outFeatures, inFeatures], -bound, bound));
    this.bias = options.bias === false ? undefined : this.param('bias', () => randomUniform([outFeatures], -bound, bound));
  }

  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const y = tf.matMul(x, this.weight, false, true);
      return this.bias ? y.add(this.bias) : y;
    });
  }
}
