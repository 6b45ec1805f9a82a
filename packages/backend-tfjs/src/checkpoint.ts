/**
 * Weights in safetensors through core's checkpointing, readable by PyTorch
 * and libtorch. A tfjs `Dense` stores its kernel as `[in, out]` (`y = x K`),
 * a torch `Linear` its weight as `[out, in]` (`y = x W^T`); convolutions and
 * normalisation layers differ in layout or names too. The `torch` layout
 * converts on the host:
 *
 * | tfjs layer | tfjs weight | torch name | torch layout |
 * |---|---|---|---|
 * | Dense | kernel `[in,out]` | weight | `[out,in]` |
 * | Conv1D | kernel `[k,in,out]` | weight | `[out,in,k]` |
 * | Conv2D | kernel `[kh,kw,in,out]` | weight | `[out,in,kh,kw]` |
 * | BatchNormalization | gamma, beta, moving_mean, moving_variance | weight, bias, running_mean, running_var | same |
 * | LayerNormalization | gamma, beta | weight, bias | same |
 * | Embedding | embeddings | weight | same |
 *
 * Other weights keep their tfjs name and layout. Layer prefixes are the
 * stable names of `layers-names` (`fc1.`, `layers.0.`): name the tfjs layers
 * like the torch module's attributes for a checkpoint to load on both sides.
 * {@link TfjsModule}s (and {@link Linear}) already use torch names and layouts.
 * @module
 */
import { HostTensor, loadModelFiles, saveModelFiles, type SaveModelOptions, type SaveModelResult } from '@accelerate/core';
import { layersModelWeights } from './layers-names.js';
import { TfjsModule } from './module.js';
import { tf } from './tf.js';
import type { TfjsModel } from './backend.js';

/** How weights are named and laid out in a file. */
export type WeightLayout = 'torch' | 'tfjs';

interface Rule {
  torch: string;
  /** Permutation tfjs -> torch (undefined: same layout). */
  perm?: number[];
}

const RULES: Record<string, Record<string, Rule>> = {
  Dense: { kernel: { torch: 'weight', perm: [1, 0] }, bias: { torch: 'bias' } },
  Conv1D: { kernel: { torch: 'weight', perm: [2, 1, 0] }, bias: { torch: 'bias' } },
  Conv2D: { kernel: { torch: 'weight', perm: [3, 2, 0, 1] }, bias: { torch: 'bias' } },
  BatchNormalization: {
    gamma: { torch: 'weight' },
    beta: { torch: 'bias' },
    moving_mean: { torch: 'running_mean' },
    moving_variance: { torch: 'running_var' },
  },
  LayerNormalization: { gamma: { torch: 'weight' }, beta: { torch: 'bias' } },
  Embedding: { embeddings: { torch: 'weight' } },
};

/** `h` with its axes permuted (`out.shape[i] = h.shape[perm[i]]`). */
export function permuteHost(h: HostTensor, perm: readonly number[]): HostTensor {
  const shape = h.shape;
  if (perm.length !== shape.length) throw new Error(`permuteHost: permutation [${perm.join(', ')}] does not fit shape [${shape.join(', ')}].`);
  const outShape = perm.map((p) => shape[p]);
  const inStrides = new Array<number>(shape.length);
  for (let i = shape.length - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i];
  }
  const src = h.data;
  const out = new (src.constructor as new (n: number) => typeof src)(src.length);
  const idx = new Array<number>(outShape.length).fill(0);
  const strides = perm.map((p) => inStrides[p]);
  for (let o = 0; o < src.length; o++) {
    let off = 0;
    for (let k = 0; k < idx.length; k++) off += idx[k] * strides[k];
    (out as Float32Array)[o] = (src as Float32Array)[off];
    for (let k = idx.length - 1; k >= 0; k--) {
      if (++idx[k] < outShape[k]) break;
      idx[k] = 0;
    }
  }
  return new HostTensor(out, outShape, h.dtype);
}

function inverse(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}

interface Mapping {
  tfjsName: string;
  torchName: string;
  perm?: number[];
  variable: tf.Variable;
}

function mappings(model: TfjsModel): Mapping[] {
  if (model instanceof TfjsModule) return Object.entries(model.stateDict()).map(([n, v]) => ({ tfjsName: n, torchName: n, variable: v }));
  return layersModelWeights(model).map((w) => {
    const rule = RULES[w.layerClass]?.[w.short];
    const prefix = w.name.slice(0, w.name.length - w.short.length);
    return rule && w.name.endsWith(w.short)
      ? { tfjsName: w.name, torchName: prefix + rule.torch, perm: rule.perm, variable: w.variable }
      : { tfjsName: w.name, torchName: w.name, variable: w.variable };
  });
}

function hostOf(v: tf.Tensor): HostTensor {
  return new HostTensor(Float32Array.from(v.dataSync() as Float32Array), v.shape, 'float32');
}

/** The model's weights as host tensors, in `layout` (default `torch`). */
export function tfjsStateDict(model: TfjsModel, layout: WeightLayout = 'torch'): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const m of mappings(model)) {
    if (m.variable.dtype !== 'float32') throw new Error(`tfjsStateDict: ${m.tfjsName} is ${m.variable.dtype}; only float32 weights are saved.`);
    const h = hostOf(m.variable);
    if (layout === 'tfjs') out[m.tfjsName] = h;
    else out[m.torchName] = m.perm ? permuteHost(h, m.perm) : h;
  }
  return out;
}

/**
 * Load host tensors in `layout` into the model. `strict` (default) requires
 * exactly the model's keys; torch's `num_batches_tracked` is always ignored.
 */
export function loadTfjsStateDict(model: TfjsModel, state: Record<string, HostTensor>, options: { layout?: WeightLayout; strict?: boolean } = {}): void {
  const layout = options.layout ?? 'torch';
  const strict = options.strict ?? true;
  const maps = mappings(model);
  const key = (m: Mapping) => (layout === 'torch' ? m.torchName : m.tfjsName);
  const known = new Set(maps.map(key));
  const given = Object.keys(state).filter((k) => !k.endsWith('num_batches_tracked'));
  if (strict) {
    const missing = maps.map(key).filter((k) => !(k in state));
    const unexpected = given.filter((k) => !known.has(k));
    if (missing.length || unexpected.length) {
      throw new Error(
        `loadTfjsStateDict (${layout} layout, strict): missing ${JSON.stringify(missing)}, unexpected ${JSON.stringify(unexpected)}. ` +
          'Name the tfjs layers like the checkpoint (e.g. tf.layers.dense({ name: "fc1", … }) for "fc1.weight"), or pass { strict: false }.',
      );
    }
  }
  tf.tidy(() => {
    for (const m of maps) {
      let h = state[key(m)];
      if (!h) continue;
      if (layout === 'torch' && m.perm) h = permuteHost(h, inverse(m.perm));
      const want = m.variable.shape;
      if (h.shape.length !== want.length || h.shape.some((s, i) => s !== want[i])) {
        throw new Error(`loadTfjsStateDict: ${key(m)} has shape [${h.shape.join(', ')}] but ${m.tfjsName} needs [${want.join(', ')}] (after layout conversion).`);
      }
      const data = h.dtype === 'float32' ? (h.data as Float32Array) : Float32Array.from(h.toArray());
      m.variable.assign(tf.tensor(data, [...h.shape], 'float32'));
    }
  });
}

/**
 * A state dict given to `loadStateDict`, in tfjs names and layout. A LayersModel
 * checkpoint written by `saveModel`/`saveState` (or PyTorch) is in the torch
 * layout: recognised by a torch-only name (`fc1.weight` where tfjs has
 * `fc1.kernel`), renamed and permuted back. Other states pass through.
 * `created` lists the tensors made here (the caller disposes them).
 */
export function stateToTfjsLayout<T extends tf.Tensor | HostTensor>(
  model: TfjsModel,
  state: Record<string, T>,
  strict: boolean,
): { state: Record<string, T | tf.Tensor | HostTensor>; created: tf.Tensor[] } {
  if (model instanceof TfjsModule) return { state, created: [] };
  const maps = mappings(model);
  const torchOnly = new Set(maps.filter((m) => m.torchName !== m.tfjsName).map((m) => m.torchName));
  if (!Object.keys(state).some((k) => torchOnly.has(k))) return { state, created: [] };
  if (strict) {
    const known = new Set(maps.map((m) => m.torchName));
    const missing = maps.map((m) => m.torchName).filter((k) => !(k in state));
    const unexpected = Object.keys(state).filter((k) => !known.has(k) && !k.endsWith('num_batches_tracked'));
    if (missing.length || unexpected.length) {
      throw new Error(
        `loadStateDict (torch layout, strict): ${missing.length ? `missing keys ${JSON.stringify(missing)}` : ''}` +
          `${missing.length && unexpected.length ? '; ' : ''}${unexpected.length ? `unexpected keys ${JSON.stringify(unexpected)}` : ''}. ` +
          `The model has ${maps.map((m) => m.torchName).join(', ')}. Name the tfjs layers like the checkpoint, or pass { strict: false }.`,
      );
    }
  }
  const out: Record<string, T | tf.Tensor | HostTensor> = {};
  const created: tf.Tensor[] = [];
  for (const m of maps) {
    const v = state[m.torchName];
    if (v === undefined) continue;
    if (!m.perm) out[m.tfjsName] = v;
    else if (v instanceof HostTensor) out[m.tfjsName] = permuteHost(v, inverse(m.perm));
    else {
      const t = tf.transpose(v as tf.Tensor, inverse(m.perm));
      created.push(t);
      out[m.tfjsName] = t;
    }
  }
  return { state: out, created };
}

/** Options of {@link saveTfjsWeights}. */
export interface SaveTfjsWeightsOptions extends SaveModelOptions {
  /** Default `torch`: loadable by libtorch / PyTorch. */
  layout?: WeightLayout;
}

/** Save the weights with core's `saveModelFiles` (`model.safetensors` or shards). */
export function saveTfjsWeights(model: TfjsModel, dir: string, options: SaveTfjsWeightsOptions = {}): Promise<SaveModelResult> {
  const { layout, ...rest } = options;
  return saveModelFiles(tfjsStateDict(model, layout), dir, rest);
}

/** Load weights saved by {@link saveTfjsWeights}, `Accelerator.saveModel` or PyTorch (safetensors file, folder or index). */
export async function loadTfjsWeights(model: TfjsModel, checkpoint: string, options: { layout?: WeightLayout; strict?: boolean } = {}): Promise<void> {
  loadTfjsStateDict(model, await loadModelFiles(checkpoint), options);
}
