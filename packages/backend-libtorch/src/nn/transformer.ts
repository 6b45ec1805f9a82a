/**
 * Multi-head attention and the Transformer encoder layer, as `torch.nn`
 * (same parameter names, so state dicts interchange with PyTorch's).
 * @module
 */
import { empty, Tensor, zeros, tidy } from '../tensor.js';
import * as F from './functional.js';
import * as init from './init.js';
import { Dropout, LayerNorm, Linear, type FactoryOptions } from './layers.js';
import { Module, Parameter } from './module.js';

/** Options of {@link MultiheadAttention}. */
export interface MultiheadAttentionOptions extends FactoryOptions {
  dropout?: number;
  bias?: boolean;
  /** Inputs are [batch, seq, embed] (default true here; PyTorch's default is false). */
  batchFirst?: boolean;
}

/** Masks of {@link MultiheadAttention.forward}. */
export interface AttentionMasks {
  /** [L, S] (or [B·H, L, S]): bool (true = may NOT attend, as PyTorch) or additive float. */
  attnMask?: Tensor | null;
  /** [B, S] bool: true marks padding keys to ignore. */
  keyPaddingMask?: Tensor | null;
}

/** Multi-head scaled dot-product attention with packed input projections. */
export class MultiheadAttention extends Module {
  inProjWeight: Parameter;
  inProjBias: Parameter | null;
  outProj: Linear;
  readonly headDim: number;
  readonly batchFirst: boolean;
  readonly dropout: number;

  constructor(
    readonly embedDim: number,
    readonly numHeads: number,
    options: MultiheadAttentionOptions = {},
  ) {
    super();
    if (embedDim % numHeads !== 0) throw new Error(`MultiheadAttention: embedDim ${embedDim} must be divisible by numHeads ${numHeads}`);
    this.headDim = embedDim / numHeads;
    this.batchFirst = options.batchFirst ?? true;
    this.dropout = options.dropout ?? 0;
    // PyTorch names: in_proj_weight, in_proj_bias, out_proj.{weight,bias}
    this.inProjWeight = this.registerParameter('in_proj_weight', new Parameter(empty([3 * embedDim, embedDim], options)));
    this.inProjBias = options.bias === false ? null : this.registerParameter('in_proj_bias', new Parameter(zeros([3 * embedDim], options)));
    this.outProj = this.registerModule('out_proj', new Linear(embedDim, embedDim, options));
    init.xavierUniform_(this.inProjWeight);
    if (this.outProj.bias) init.zeros_(this.outProj.bias);
  }

  /** Returns the attention output with the query's layout. */
  forward(query: Tensor, key: Tensor = query, value: Tensor = key, masks: AttentionMasks = {}): Tensor {
    return tidy(() => {
      const bf = (t: Tensor) => (this.batchFirst ? t : t.transpose(0, 1));
      const q0 = bf(query);
      const k0 = bf(key);
      const v0 = bf(value);
      const [B, L, E] = q0.shape;
      const S = k0.shape[1];
      const H = this.numHeads;
      const D = this.headDim;
      const [wq, wk, wv] = this.inProjWeight.chunk(3, 0);
      const [bq, bk, bv] = this.inProjBias ? this.inProjBias.chunk(3, 0) : [null, null, null];
      const heads = (t: Tensor, n: number) => t.reshape(B, n, H, D).transpose(1, 2); // [B, H, n, D]
      const q = heads(F.linear(q0, wq, bq), L);
      const k = heads(F.linear(k0, wk, bk), S);
      const v = heads(F.linear(v0, wv, bv), S);
      let scores = q.matmul(k.transpose(-2, -1)).div(Math.sqrt(D)); // [B, H, L, S]
      const m = masks.attnMask;
      if (m) {
        const mm = m.ndim === 3 ? m.reshape(B, H, L, S) : m;
        scores = mm.dtype === 'bool' ? scores.maskedFill(mm, -Infinity) : scores.add(mm);
      }
      if (masks.keyPaddingMask) scores = scores.maskedFill(masks.keyPaddingMask.reshape(B, 1, 1, S), -Infinity);
      let p = scores.softmax(-1);
      if (this.dropout > 0) p = F.dropout(p, this.dropout, this.training);
      const ctx = p.matmul(v).transpose(1, 2).reshape(B, L, E);
      return bf(this.outProj.forward(ctx));
    });
  }
}

/** Options of {@link TransformerEncoderLayer}. */
export interface TransformerEncoderLayerOptions extends FactoryOptions {
  dimFeedforward?: number;
  dropout?: number;
  activation?: 'relu' | 'gelu';
  layerNormEps?: number;
  batchFirst?: boolean;
  /** Pre-norm (LayerNorm before attention and feed-forward) instead of post-norm. */
  normFirst?: boolean;
}

/** Self-attention + feed-forward block, as `torch.nn.TransformerEncoderLayer`. */
export class TransformerEncoderLayer extends Module {
  self_attn: MultiheadAttention;
  linear1: Linear;
  dropout: Dropout;
  linear2: Linear;
  norm1: LayerNorm;
  norm2: LayerNorm;
  dropout1: Dropout;
  dropout2: Dropout;
  readonly normFirst: boolean;
  readonly activation: 'relu' | 'gelu';

  constructor(dModel: number, nhead: number, options: TransformerEncoderLayerOptions = {}) {
    super();
    const p = options.dropout ?? 0.1;
    const ff = options.dimFeedforward ?? 2048;
    const eps = options.layerNormEps ?? 1e-5;
    this.self_attn = new MultiheadAttention(dModel, nhead, { dropout: p, batchFirst: options.batchFirst ?? true, dtype: options.dtype, device: options.device });
    this.linear1 = new Linear(dModel, ff, options);
    this.dropout = new Dropout(p);
    this.linear2 = new Linear(ff, dModel, options);
    this.norm1 = new LayerNorm(dModel, { eps, dtype: options.dtype, device: options.device });
    this.norm2 = new LayerNorm(dModel, { eps, dtype: options.dtype, device: options.device });
    this.dropout1 = new Dropout(p);
    this.dropout2 = new Dropout(p);
    this.normFirst = options.normFirst ?? false;
    this.activation = options.activation ?? 'relu';
  }

  forward(src: Tensor, masks: { srcMask?: Tensor | null; srcKeyPaddingMask?: Tensor | null } = {}): Tensor {
    return tidy(() => {
      const sa = (x: Tensor) =>
        this.dropout1.forward(this.self_attn.forward(x, x, x, { attnMask: masks.srcMask, keyPaddingMask: masks.srcKeyPaddingMask }));
      const act = (x: Tensor) => (this.activation === 'gelu' ? F.gelu(x) : x.relu());
      const ffn = (x: Tensor) => this.dropout2.forward(this.linear2.forward(this.dropout.forward(act(this.linear1.forward(x)))));
      let x = src;
      if (this.normFirst) {
        x = x.add(sa(this.norm1.forward(x)));
        x = x.add(ffn(this.norm2.forward(x)));
      } else {
        x = this.norm1.forward(x.add(sa(x)));
        x = this.norm2.forward(x.add(ffn(x)));
      }
      return x;
    });
  }
}
