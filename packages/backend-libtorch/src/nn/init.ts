/**
 * `nn.init`: in-place initialisers, as `torch.nn.init` (no autograd recording).
 * @module
 */
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';

/** fan_in and fan_out of a weight, as PyTorch computes them. */
export function calculateFanInAndFanOut(t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length < 2) throw new Error(`fan in/out needs a tensor with at least 2 dimensions, got shape [${s.join(', ')}]`);
  const receptive = s.slice(2).reduce((a, b) => a * b, 1);
  return [s[1] * receptive, s[0] * receptive];
}

/** Gain for a nonlinearity (`torch.nn.init.calculate_gain`). */
export function calculateGain(nonlinearity: string, param?: number): number {
  switch (nonlinearity) {
    case 'linear':
    case 'conv2d':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const slope = param ?? 0.01;
      return Math.sqrt(2 / (1 + slope * slope));
    }
    case 'selu':
      return 3 / 4;
    default:
      throw new Error(`calculateGain: unsupported nonlinearity '${nonlinearity}'`);
  }
}

export function uniform_(t: Tensor, a = 0, b = 1): Tensor {
  native.initUniform(t._h, a, b);
  return t;
}
export function normal_(t: Tensor, mean = 0, std = 1): Tensor {
  native.initNormal(t._h, mean, std);
  return t;
}
export function constant_(t: Tensor, value: number): Tensor {
  native.initFill(t._h, value);
  return t;
}
export function zeros_(t: Tensor): Tensor {
  return constant_(t, 0);
}
export function ones_(t: Tensor): Tensor {
  return constant_(t, 1);
}
/** Kaiming (He) uniform; `a` is the negative slope of leaky_relu. */
export function kaimingUniform_(t: Tensor, a = 0, mode: 'fan_in' | 'fan_out' = 'fan_in', nonlinearity = 'leaky_relu'): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  const gain = calculateGain(nonlinearity, a);
  const bound = Math.sqrt(3) * (gain / Math.sqrt(mode === 'fan_in' ? fanIn : fanOut));
  return uniform_(t, -bound, bound);
}
export function kaimingNormal_(t: Tensor, a = 0, mode: 'fan_in' | 'fan_out' = 'fan_in', nonlinearity = 'leaky_relu'): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  const std = calculateGain(nonlinearity, a) / Math.sqrt(mode === 'fan_in' ? fanIn : fanOut);
  return normal_(t, 0, std);
}
export function xavierUniform_(t: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -bound, bound);
}
export function xavierNormal_(t: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(t);
  return normal_(t, 0, gain * Math.sqrt(2 / (fanIn + fanOut)));
}
