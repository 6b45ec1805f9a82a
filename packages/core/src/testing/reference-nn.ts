/**
 * Modules of the reference backend: a small `nn.Module` analogue and the
 * models Accelerate's own tests train (`RegressionModel`, a linear layer).
 * @module
 */
import { defaultGenerator, full, rand, RefTensor, type TensorOptions } from './reference-tensor.js';

/**
 * Base class of reference-backend models, after `torch.nn.Module`:
 * parameters, buffers and child modules by name, train/eval mode, and a
 * `forward` that wrappers (autocast, hooks) may replace on the instance.
 */
export abstract class RefModule {
  /** Training mode flag (`train()` / `eval()`). */
  training = true;
  private readonly params = new Map<string, RefTensor>();
  private readonly buffers = new Map<string, RefTensor>();
  private readonly children = new Map<string, RefModule>();

  /** Compute the output. */
  abstract forward(...inputs: RefTensor[]): RefTensor;

  /** Register `t` as a trainable parameter (sets `requiresGrad`). Returns `t`. */
  protected registerParameter(name: string, t: RefTensor): RefTensor {
    this.checkName(name);
    t.requiresGrad_(true);
    this.params.set(name, t);
    return t;
  }

  /** Register a non-trainable tensor saved in the state dict (running statistics, …). */
  protected registerBuffer(name: string, t: RefTensor): RefTensor {
    this.checkName(name);
    this.buffers.set(name, t);
    return t;
  }

  /** Register a child module; its entries get the `name.` prefix. */
  protected registerModule<M extends RefModule>(name: string, m: M): M {
    this.checkName(name);
    this.children.set(name, m);
    return m;
  }

  private checkName(name: string): void {
    if (!name || name.includes('.')) {
      throw new TypeError(`RefModule: invalid name '${name}'; names must be non-empty and contain no '.'.`);
    }
    if (this.params.has(name) || this.buffers.has(name) || this.children.has(name)) {
      throw new Error(`RefModule: '${name}' is already registered on ${this.constructor.name}.`);
    }
  }

  /** Parameters by dotted name, in registration order (children after own). */
  namedParameters(prefix = ''): Array<[string, RefTensor]> {
    const out: Array<[string, RefTensor]> = [];
    for (const [n, p] of this.params) out.push([prefix + n, p]);
    for (const [n, m] of this.children) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** Buffers by dotted name. */
  namedBuffers(prefix = ''): Array<[string, RefTensor]> {
    const out: Array<[string, RefTensor]> = [];
    for (const [n, b] of this.buffers) out.push([prefix + n, b]);
    for (const [n, m] of this.children) out.push(...m.namedBuffers(`${prefix}${n}.`));
    return out;
  }

  /** Parameters, without names. */
  parameters(): RefTensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Child modules by name (direct children only). */
  namedChildren(): Array<[string, RefModule]> {
    return [...this.children];
  }

  /** Set training mode on this module and its children. Returns `this`. */
  train(mode = true): this {
    this.training = mode;
    for (const m of this.children.values()) m.train(mode);
    return this;
  }

  /** Evaluation mode (`train(false)`). */
  eval(): this {
    return this.train(false);
  }
}

/** Options of {@link RegressionModel}. */
export interface RegressionModelOptions {
  a?: number;
  b?: number;
}

/**
 * Accelerate's test fixture `RegressionModel`: `forward(x) = x * a + b` with
 * `a` and `b` one-element float32 parameters (initial values 0 unless given).
 */
export class RegressionModel extends RefModule {
  readonly a: RefTensor;
  readonly b: RefTensor;

  constructor(options: RegressionModelOptions = {}) {
    super();
    this.a = this.registerParameter('a', full([1], options.a ?? 0));
    this.b = this.registerParameter('b', full([1], options.b ?? 0));
  }

  forward(x: RefTensor): RefTensor {
    return x.mul(this.a).add(this.b);
  }
}

/**
 * A fully connected layer `y = x · weightᵀ + bias`, weight of shape
 * `[outFeatures, inFeatures]` as in `torch.nn.Linear` (so state dicts match
 * PyTorch's layout). Initialised uniformly in ±1/√inFeatures from the
 * default generator, so `manualSeed` makes it reproducible.
 */
export class LinearModel extends RefModule {
  readonly weight: RefTensor;
  readonly bias: RefTensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { bias?: boolean } & Pick<TensorOptions, 'dtype' | 'device'> = {},
  ) {
    super();
    for (const [k, v] of [
      ['inFeatures', inFeatures],
      ['outFeatures', outFeatures],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`LinearModel: ${k} must be a positive integer, got ${v}.`);
    }
    const bound = 1 / Math.sqrt(inFeatures);
    const init = { low: -bound, high: bound, generator: defaultGenerator, dtype: options.dtype, device: options.device };
    this.weight = this.registerParameter('weight', rand([outFeatures, inFeatures], init));
    this.bias = options.bias === false ? null : this.registerParameter('bias', rand([outFeatures], init));
  }

  /** `x` of shape `[batch, inFeatures]` (or `[inFeatures]`) → `[batch, outFeatures]` (or `[outFeatures]`). */
  forward(x: RefTensor): RefTensor {
    const batched = x.shape.length === 2;
    if (!batched && x.shape.length !== 1) {
      throw new RangeError(`LinearModel.forward: expected input of shape [batch, ${this.inFeatures}], got [${x.shape.join(', ')}].`);
    }
    const x2 = batched ? x : x.reshape([1, x.shape[0]]);
    if (x2.shape[1] !== this.inFeatures) {
      throw new RangeError(
        `LinearModel.forward: input has ${x2.shape[1]} features but the layer expects ${this.inFeatures}.`,
      );
    }
    let y = x2.matmul(this.weight.t());
    if (this.bias) y = y.add(this.bias);
    return batched ? y : y.reshape([this.outFeatures]);
  }
}
