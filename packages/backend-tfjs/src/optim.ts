/**
 * Optimizers: a `tf.train.*` optimizer bound to the variables it updates, so
 * gradients stored by `backward` (see the autograd module) are applied by
 * `step()` as in PyTorch. Gradients stay stored after a step until `zeroGrad`.
 * @module
 */
import { clearGrads, discardRecording, gradOf, noGrad } from './autograd.js';
import { tf } from './tf.js';

/** Anything that names its parameters: a {@link TfjsModule}, a `tf.LayersModel`, or a list of variables. */
export type ParamSource = tf.Variable[] | { parameters(): tf.Variable[] } | tf.LayersModel;

function paramsOf(source: ParamSource): tf.Variable[] {
  if (Array.isArray(source)) return source;
  if (source instanceof tf.LayersModel) return source.trainableWeights.map((w) => w.read() as tf.Variable);
  return source.parameters();
}

/**
 * A tfjs optimizer over a fixed list of variables. `step()` applies the stored
 * gradient of each variable that has one; `zeroGrad()` drops them.
 */
export class TfjsOptimizer {
  /** Variables this optimizer updates. */
  readonly params: tf.Variable[];

  /**
   * @param optimizer a `tf.train.*` optimizer (its learning rate is read and set through {@link TfjsOptimizer.lr}).
   * @param params the variables to update, or a model to take them from.
   */
  constructor(readonly optimizer: tf.Optimizer, params: ParamSource) {
    this.params = [...paramsOf(params)];
    const notTrainable = this.params.filter((p) => !(p instanceof tf.Variable) || !p.trainable);
    if (notTrainable.length) {
      throw new Error(`TfjsOptimizer: ${notTrainable.length} of the parameters are not trainable tf.Variables; pass the model's trainable variables only.`);
    }
  }

  /** Apply the stored gradients (variables without a gradient are left alone, as in PyTorch). */
  step(): void {
    discardRecording();
    const grads: tf.NamedTensorMap = {};
    for (const p of this.params) {
      const g = gradOf(p);
      if (g) grads[p.name] = g;
    }
    if (Object.keys(grads).length === 0) return;
    noGrad(() => this.optimizer.applyGradients(grads));
  }

  /** Drop the stored gradients of this optimizer's variables (`setToNone`), or zero-fill them. */
  zeroGrad(setToNone = true): void {
    discardRecording();
    clearGrads(this.params, setToNone);
  }

  /** Current learning rate. */
  get lr(): number {
    return (this.optimizer as unknown as { learningRate: number }).learningRate;
  }
  set lr(value: number) {
    if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`TfjsOptimizer.lr must be a finite number >= 0, got ${value}.`);
    const o = this.optimizer as unknown as { learningRate: number; setLearningRate?: (lr: number) => void };
    // SGD and momentum cache the rate in a kept scalar that setLearningRate replaces.
    if (typeof o.setLearningRate === 'function') o.setLearningRate(value);
    else o.learningRate = value;
  }

  /** Free the optimizer's slot variables (moments, accumulators). */
  dispose(): void {
    this.optimizer.dispose();
  }
}

/** `tf.train.sgd` over `params`. */
export function sgd(params: ParamSource, lr: number): TfjsOptimizer {
  return new TfjsOptimizer(tf.train.sgd(lr), params);
}

/** `tf.train.momentum` over `params` (heavy-ball momentum; `nesterov` optional). */
export function momentum(params: ParamSource, lr: number, m = 0.9, nesterov = false): TfjsOptimizer {
  return new TfjsOptimizer(tf.train.momentum(lr, m, nesterov), params);
}

/**
 * `tf.train.adam` over `params`, with tfjs's defaults (epsilon: the engine's,
 * 1e-7 in float32; PyTorch uses 1e-8). tfjs has no AdamW (decoupled weight decay).
 */
export function adam(params: ParamSource, lr = 1e-3, beta1 = 0.9, beta2 = 0.999, epsilon?: number): TfjsOptimizer {
  return new TfjsOptimizer(tf.train.adam(lr, beta1, beta2, epsilon), params);
}

/** `tf.train.rmsprop` over `params` (tfjs's defaults). */
export function rmsprop(params: ParamSource, lr = 1e-2, decay = 0.9, m = 0, epsilon?: number): TfjsOptimizer {
  return new TfjsOptimizer(tf.train.rmsprop(lr, decay, m, epsilon), params);
}

/** `tf.train.adagrad` over `params`. */
export function adagrad(params: ParamSource, lr = 1e-2): TfjsOptimizer {
  return new TfjsOptimizer(tf.train.adagrad(lr), params);
}

/**
 * A learning-rate schedule as PyTorch's `LambdaLR`: after `n` steps the rate
 * is `baseLr * lrLambda(n)`. Prepared through the Accelerator it steps once
 * per optimizer update.
 */
export class TfjsLambdaLR {
  readonly baseLr: number;
  /** Steps taken. */
  lastEpoch = 0;

  constructor(readonly optimizer: TfjsOptimizer, readonly lrLambda: (step: number) => number) {
    this.baseLr = optimizer.lr;
    optimizer.lr = this.baseLr * lrLambda(0);
  }

  step(): void {
    this.lastEpoch += 1;
    this.optimizer.lr = this.baseLr * this.lrLambda(this.lastEpoch);
  }

  /** The current rate. */
  getLastLr(): number[] {
    return [this.optimizer.lr];
  }
}
