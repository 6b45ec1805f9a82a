/**
 * Built-in layers, as in `torch.nn`. Each also describes itself as one ATen call
 * (`_chainStep`), which lets {@link Sequential} run a stack of built-in layers in a
 * single native call.
 * @module
 */
import { native, opId, type NativeArg } from '../native.js';
import { empty, ones, Tensor, zeros, type DType } from '../tensor.js';
import * as F from './functional.js';
import * as init from './init.js';
import { Module, Parameter } from './module.js';

const PREV = native.PREV;

/** A layer that maps one tensor to one tensor with a single ATen operator. @internal */
export interface Chainable {
  /** `[opId, ...args]` with `native.PREV` standing for the input; null if not fusable now. */
  _chainStep(): NativeArg[] | null;
  /** Work to do after a fused call (e.g. BatchNorm's batch counter). */
  _afterChain?(): void;
}

function isChainable(m: unknown): m is Module & Chainable {
  return typeof (m as Partial<Chainable>)._chainStep === 'function';
}

/** Options for layers that create parameters. */
export interface FactoryOptions {
  dtype?: DType;
  device?: string;
}

/** y = x Wᵀ + b. Weight [out, in], initialised as PyTorch (Kaiming uniform, a=√5). */
export class Linear extends Module implements Chainable {
  weight: Parameter;
  bias: Parameter | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: FactoryOptions & { bias?: boolean } = {},
  ) {
    super();
    this.weight = new Parameter(empty([outFeatures, inFeatures], options));
    this.bias = options.bias === false ? null : new Parameter(empty([outFeatures], options));
    this.resetParameters();
  }
  resetParameters(): void {
    init.kaimingUniform_(this.weight, Math.sqrt(5));
    if (this.bias) {
      const bound = this.inFeatures > 0 ? 1 / Math.sqrt(this.inFeatures) : 0;
      init.uniform_(this.bias, -bound, bound);
    }
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
  /** @internal */
  _chainStep(): NativeArg[] {
    return [opId('linear'), PREV, this.weight._h, this.bias ? this.bias._h : null];
  }
  override extraRepr(): string {
    return `inFeatures=${this.inFeatures}, outFeatures=${this.outFeatures}, bias=${this.bias !== null}`;
  }
}

/** 2-D convolution over [N, C, H, W]. */
export class Conv2d extends Module implements Chainable {
  weight: Parameter;
  bias: Parameter | null;
  readonly stride: number[];
  readonly padding: number[];
  readonly dilation: number[];
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | [number, number],
    options: FactoryOptions & { stride?: number | number[]; padding?: number | number[]; dilation?: number | number[]; groups?: number; bias?: boolean } = {},
  ) {
    super();
    const k = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    const two = (v: number | number[] | undefined, d: number) => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v);
    this.stride = two(options.stride, 1);
    this.padding = two(options.padding, 0);
    this.dilation = two(options.dilation, 1);
    this.groups = options.groups ?? 1;
    this.weight = new Parameter(empty([outChannels, inChannels / this.groups, k[0], k[1]], options));
    this.bias = options.bias === false ? null : new Parameter(empty([outChannels], options));
    init.kaimingUniform_(this.weight, Math.sqrt(5));
    if (this.bias) {
      const [fanIn] = init.calculateFanInAndFanOut(this.weight);
      const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
      init.uniform_(this.bias, -bound, bound);
    }
  }
  readonly groups: number;
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, this.stride, this.padding, this.dilation, this.groups);
  }
  /** @internal */
  _chainStep(): NativeArg[] {
    return [opId('conv2d'), PREV, this.weight._h, this.bias ? this.bias._h : null, this.stride, this.padding, this.dilation, this.groups];
  }
}

/** 2-D max pooling. */
export class MaxPool2d extends Module implements Chainable {
  constructor(
    readonly kernelSize: number | number[],
    readonly stride?: number | number[],
    readonly padding: number | number[] = 0,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, this.kernelSize, this.stride, this.padding);
  }
  /** @internal */
  _chainStep(): NativeArg[] {
    return [opId('max_pool2d'), PREV, this.kernelSize, this.stride ?? [], this.padding, 1, false];
  }
}

/** Batch normalisation over [N, C, H, W] with running statistics. */
export class BatchNorm2d extends Module implements Chainable {
  weight: Parameter | null;
  bias: Parameter | null;
  runningMean: Tensor;
  runningVar: Tensor;
  numBatchesTracked: Tensor;
  constructor(
    readonly numFeatures: number,
    readonly options: FactoryOptions & { eps?: number; momentum?: number; affine?: boolean } = {},
  ) {
    super();
    const affine = options.affine ?? true;
    this.weight = affine ? new Parameter(ones([numFeatures], options)) : null;
    this.bias = affine ? new Parameter(zeros([numFeatures], options)) : null;
    // PyTorch's state_dict names: running_mean, running_var, num_batches_tracked.
    this.runningMean = this.registerBuffer('running_mean', zeros([numFeatures], options));
    this.runningVar = this.registerBuffer('running_var', ones([numFeatures], options));
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int64' }));
  }
  forward(x: Tensor): Tensor {
    this._afterChain();
    return F.batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias, this.training, this.options.momentum ?? 0.1, this.options.eps ?? 1e-5);
  }
  /** @internal */
  _chainStep(): NativeArg[] {
    return [
      opId('batch_norm'),
      PREV,
      this.weight?._h ?? null,
      this.bias?._h ?? null,
      this.runningMean._h,
      this.runningVar._h,
      this.training,
      this.options.momentum ?? 0.1,
      this.options.eps ?? 1e-5,
      true,
    ];
  }
  _afterChain(): void {
    if (this.training) native.op(opId('add_', 'Scalar'), this.numBatchesTracked._h, 1, 1);
  }
}

/** Layer normalisation over the last dimensions. */
export class LayerNorm extends Module implements Chainable {
  weight: Parameter | null;
  bias: Parameter | null;
  readonly normalizedShape: number[];
  constructor(normalizedShape: number | number[], readonly options: FactoryOptions & { eps?: number; elementwiseAffine?: boolean } = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    const affine = options.elementwiseAffine ?? true;
    this.weight = affine ? new Parameter(ones(this.normalizedShape, options)) : null;
    this.bias = affine ? new Parameter(zeros(this.normalizedShape, options)) : null;
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.options.eps ?? 1e-5);
  }
  /** @internal */
  _chainStep(): NativeArg[] {
    return [opId('layer_norm'), PREV, this.normalizedShape, this.weight?._h ?? null, this.bias?._h ?? null, this.options.eps ?? 1e-5, true];
  }
}

/** A lookup table of `numEmbeddings` vectors (weight ~ N(0, 1)). */
export class Embedding extends Module implements Chainable {
  weight: Parameter;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    readonly options: FactoryOptions & { paddingIdx?: number } = {},
  ) {
    super();
    this.weight = new Parameter(empty([numEmbeddings, embeddingDim], options));
    init.normal_(this.weight);
    if (options.paddingIdx !== undefined) {
      const row = this.weight.detach().select(0, options.paddingIdx);
      init.zeros_(row);
      row.dispose();
    }
  }
  forward(indices: Tensor): Tensor {
    return F.embedding(indices, this.weight, this.options.paddingIdx);
  }
  /** @internal */
  _chainStep(): NativeArg[] {
    return [opId('embedding'), this.weight._h, PREV, this.options.paddingIdx ?? -1, false, false];
  }
}

/** Dropout with probability `p` (active in training mode only). */
export class Dropout extends Module implements Chainable {
  constructor(readonly p = 0.5) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training);
  }
  /** @internal */
  _chainStep(): NativeArg[] {
    return [opId('dropout'), PREV, this.p, this.training];
  }
}

/** Base of parameter-free single-operator activations. */
abstract class Activation extends Module implements Chainable {
  /** @internal */
  protected abstract step(): NativeArg[];
  forward(x: Tensor): Tensor {
    const [id, ...args] = this.step();
    return new Tensor(native.op(id as number, ...args.map((a) => (a === PREV ? x._h : a))));
  }
  /** @internal */
  _chainStep(): NativeArg[] {
    return this.step();
  }
}

export class ReLU extends Activation {
  /** @internal */
  protected step(): NativeArg[] {
    return [opId('relu'), PREV];
  }
}
export class GELU extends Activation {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }
  /** @internal */
  protected step(): NativeArg[] {
    return [opId('gelu'), PREV, this.approximate];
  }
}
export class SiLU extends Activation {
  /** @internal */
  protected step(): NativeArg[] {
    return [opId('silu'), PREV];
  }
}
export class Tanh extends Activation {
  /** @internal */
  protected step(): NativeArg[] {
    return [opId('tanh'), PREV];
  }
}
export class Sigmoid extends Activation {
  /** @internal */
  protected step(): NativeArg[] {
    return [opId('sigmoid'), PREV];
  }
}
export class Softmax extends Activation {
  constructor(readonly dim = -1) {
    super();
  }
  /** @internal */
  protected step(): NativeArg[] {
    return [opId('softmax', 'int'), PREV, this.dim];
  }
}
export class LogSoftmax extends Activation {
  constructor(readonly dim = -1) {
    super();
  }
  /** @internal */
  protected step(): NativeArg[] {
    return [opId('log_softmax', 'int'), PREV, this.dim];
  }
}
export class Flatten extends Activation {
  constructor(
    readonly startDim = 1,
    readonly endDim = -1,
  ) {
    super();
  }
  /** @internal */
  protected step(): NativeArg[] {
    return [opId('flatten', 'using_ints'), PREV, this.startDim, this.endDim];
  }
}
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/**
 * Layers applied in order. When every layer is a built-in one without hooks, the
 * whole forward runs in one native call (`fused`; set `fused = false` to disable).
 */
export class Sequential extends Module {
  fused = true;
  private readonly _layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this._layers = layers;
    layers.forEach((m, i) => this.registerModule(String(i), m));
  }
  /** Layer `i`. */
  at(i: number): Module {
    return this._layers[i < 0 ? this._layers.length + i : i];
  }
  get length(): number {
    return this._layers.length;
  }
  [Symbol.iterator](): Iterator<Module> {
    return this._layers[Symbol.iterator]();
  }
  forward(x: Tensor): Tensor {
    if (this.fused && this._layers.length > 1 && this._layers.every((m) => isChainable(m) && !m.hasHooks())) {
      const steps = this._layers.map((m) => (m as unknown as Chainable)._chainStep());
      if (steps.every((s) => s !== null)) {
        const out = new Tensor(native.chain(x._h, steps as NativeArg[][]));
        for (const m of this._layers) (m as unknown as Chainable)._afterChain?.();
        return out;
      }
    }
    let cur = x;
    for (const m of this._layers) {
      const next = m.forward(cur);
      // Intermediates are ours to free (autograd keeps what it needs).
      if (cur !== x && next !== cur) cur.dispose();
      cur = next;
    }
    return cur;
  }
}

/** A list of modules registered by index (no forward of its own). */
export class ModuleList extends Module {
  private readonly _items: Module[] = [];
  constructor(modules: Module[] = []) {
    super();
    for (const m of modules) this.append(m);
  }
  append(m: Module): this {
    this.registerModule(String(this._items.length), m);
    this._items.push(m);
    return this;
  }
  at(i: number): Module {
    return this._items[i < 0 ? this._items.length + i : i];
  }
  get length(): number {
    return this._items.length;
  }
  [Symbol.iterator](): Iterator<Module> {
    return this._items[Symbol.iterator]();
  }
  forward(): never {
    throw new Error('ModuleList has no forward(); iterate over it in your module.');
  }
}

/** Cross-entropy loss as a module. */
export class CrossEntropyLoss extends Module {
  constructor(readonly options: F.LossOptions & { labelSmoothing?: number } = {}) {
    super();
  }
  forward(input: Tensor, target: Tensor): Tensor {
    return F.crossEntropy(input, target, this.options);
  }
}
/** Mean squared error loss as a module. */
export class MSELoss extends Module {
  constructor(readonly options: { reduction?: F.Reduction } = {}) {
    super();
  }
  forward(input: Tensor, target: Tensor): Tensor {
    return F.mseLoss(input, target, this.options);
  }
}
