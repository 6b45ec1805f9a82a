/**
 * `nn.functional`: stateless layers and losses, as `torch.nn.functional`.
 * Each maps to the ATen operator PyTorch itself calls, so results match Python.
 * @module
 */
import { REDUCTION } from '../native.js';
import { callOpHandles, Tensor } from '../tensor.js';

/** How a loss reduces over the batch. */
export type Reduction = 'none' | 'mean' | 'sum';

const t1 = (name: string, overload: string, ...args: unknown[]): Tensor => callOpHandles(name, overload, ...(args as never[])) as Tensor;
const oh = (t: Tensor | null | undefined) => (t ? t._h : null);

export function linear(input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return t1('linear', '', input._h, weight._h, oh(bias));
}
export function relu(x: Tensor): Tensor {
  return x.relu();
}
/** GELU; `approximate: 'tanh'` for the tanh approximation. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return t1('gelu', '', x._h, approximate);
}
export function silu(x: Tensor): Tensor {
  return t1('silu', '', x._h);
}
export function tanh(x: Tensor): Tensor {
  return x.tanh();
}
export function sigmoid(x: Tensor): Tensor {
  return x.sigmoid();
}
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor {
  return t1('leaky_relu', '', x._h, negativeSlope);
}
export function softmax(x: Tensor, dim: number): Tensor {
  return x.softmax(dim);
}
export function logSoftmax(x: Tensor, dim: number): Tensor {
  return x.logSoftmax(dim);
}
/** Dropout: zeroes elements with probability `p` when `training`, scaling the rest by 1/(1-p). */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  return t1('dropout', '', x._h, p, training);
}
export function conv2d(
  input: Tensor,
  weight: Tensor,
  bias?: Tensor | null,
  stride: number | number[] = 1,
  padding: number | number[] = 0,
  dilation: number | number[] = 1,
  groups = 1,
): Tensor {
  return t1('conv2d', '', input._h, weight._h, oh(bias), stride, padding, dilation, groups);
}
export function maxPool2d(
  input: Tensor,
  kernelSize: number | number[],
  stride?: number | number[],
  padding: number | number[] = 0,
  dilation: number | number[] = 1,
  ceilMode = false,
): Tensor {
  return t1('max_pool2d', '', input._h, kernelSize, stride ?? [], padding, dilation, ceilMode);
}
export function avgPool2d(input: Tensor, kernelSize: number | number[], stride?: number | number[], padding: number | number[] = 0): Tensor {
  return t1('avg_pool2d', '', input._h, kernelSize, stride ?? [], padding);
}
export function adaptiveAvgPool2d(input: Tensor, outputSize: number | number[]): Tensor {
  return t1('adaptive_avg_pool2d', '', input._h, outputSize);
}
export function batchNorm(
  input: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  training = false,
  momentum = 0.1,
  eps = 1e-5,
): Tensor {
  return t1('batch_norm', '', input._h, oh(weight), oh(bias), oh(runningMean), oh(runningVar), training, momentum, eps, true);
}
export function layerNorm(input: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return t1('layer_norm', '', input._h, normalizedShape, oh(weight), oh(bias), eps, true);
}
export function embedding(input: Tensor, weight: Tensor, paddingIdx?: number): Tensor {
  return t1('embedding', '', weight._h, input._h, paddingIdx ?? -1, false, false);
}
export function oneHot(x: Tensor, numClasses = -1): Tensor {
  return x.oneHot(numClasses);
}

// ---- losses ----

/** Options shared by the classification losses. */
export interface LossOptions {
  reduction?: Reduction;
  weight?: Tensor | null;
  ignoreIndex?: number;
}

/** Cross entropy over logits `input` [N, C, ...] and class indices (int64) or probabilities `target`. */
export function crossEntropy(input: Tensor, target: Tensor, options: LossOptions & { labelSmoothing?: number } = {}): Tensor {
  return t1(
    'cross_entropy_loss',
    '',
    input._h,
    target._h,
    oh(options.weight),
    REDUCTION[options.reduction ?? 'mean'],
    options.ignoreIndex ?? -100,
    options.labelSmoothing ?? 0,
  );
}
/** Negative log-likelihood over log-probabilities. */
export function nllLoss(input: Tensor, target: Tensor, options: LossOptions = {}): Tensor {
  return t1('nll_loss_nd', '', input._h, target._h, oh(options.weight), REDUCTION[options.reduction ?? 'mean'], options.ignoreIndex ?? -100);
}
export function mseLoss(input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  return t1('mse_loss', '', input._h, target._h, REDUCTION[options.reduction ?? 'mean']);
}
export function l1Loss(input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  return t1('l1_loss', '', input._h, target._h, REDUCTION[options.reduction ?? 'mean']);
}
export function smoothL1Loss(input: Tensor, target: Tensor, options: { reduction?: Reduction; beta?: number } = {}): Tensor {
  return t1('smooth_l1_loss', '', input._h, target._h, REDUCTION[options.reduction ?? 'mean'], options.beta ?? 1);
}
export function binaryCrossEntropy(input: Tensor, target: Tensor, options: { reduction?: Reduction; weight?: Tensor | null } = {}): Tensor {
  return t1('binary_cross_entropy', '', input._h, target._h, oh(options.weight), REDUCTION[options.reduction ?? 'mean']);
}
export function binaryCrossEntropyWithLogits(
  input: Tensor,
  target: Tensor,
  options: { reduction?: Reduction; weight?: Tensor | null; posWeight?: Tensor | null } = {},
): Tensor {
  return t1(
    'binary_cross_entropy_with_logits',
    '',
    input._h,
    target._h,
    oh(options.weight),
    oh(options.posWeight),
    REDUCTION[options.reduction ?? 'mean'],
  );
}

/** Scaled dot-product attention softmax(QKᵀ/√d + mask)·V, written with basic ops (1.13 has no fused kernel on CPU). */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, attnMask?: Tensor | null, dropoutP = 0, training = false): Tensor {
  const d = q.shape[q.ndim - 1];
  let scores = q.matmul(k.transpose(-2, -1)).div(Math.sqrt(d));
  if (attnMask) {
    scores = attnMask.dtype === 'bool' ? scores.maskedFill(attnMask.logicalNot(), -Infinity) : scores.add(attnMask);
  }
  let p = scores.softmax(-1);
  if (dropoutP > 0) p = dropout(p, dropoutP, training);
  return p.matmul(v);
}
