/**
 * Bytes per module, as Accelerate's `compute_module_sizes`: every tensor's
 * size summed into each of its ancestors' names, the root being `""`.
 * @module
 */
import { dtypeByteSize } from '@accelerate/core/internal';
import { className, modelTensors, namedChildren, numel, ownTensors, type AnyBackend } from './tree.js';

/** Options of {@link computeModuleSizes}. */
export interface ModuleSizeOptions {
  /**
   * dtype the weights will be loaded in (`float16`, `torch.bfloat16`, …):
   * floating tensors count at min(that size, their own); integer and bool
   * tensors keep their own size (they are never cast).
   */
  dtype?: string;
  /** Per-tensor dtypes that override `dtype` (full tensor names). */
  specialDtypes?: Record<string, string>;
  /** Count buffers only. */
  buffersOnly?: boolean;
}

function isIntegral(dtype: string): boolean {
  const d = dtype.replace(/^torch\./, '');
  return d.startsWith('int') || d.startsWith('uint') || d === 'bool';
}

/**
 * Size in bytes of every module (and tensor) of `model`, keyed by dotted
 * name, `""` being the whole model. A parameter shared by several modules
 * (tied) counts once, under its first name. `bool` counts 1/8 byte per
 * element, as Accelerate's `dtype_byte_size`.
 */
export function computeModuleSizes(backend: AnyBackend, model: unknown, options: ModuleSizeOptions = {}): Record<string, number> {
  const { dtype, specialDtypes, buffersOnly = false } = options;
  const target = dtype !== undefined ? dtypeByteSize(dtype) : undefined;
  const sizes = new Map<string, number>();
  for (const t of modelTensors(backend, model, { parameters: !buffersOnly })) {
    const own = backend.dtype(t.tensor);
    const n = numel(backend.shape(t.tensor));
    let size: number;
    if (specialDtypes && Object.prototype.hasOwnProperty.call(specialDtypes, t.name)) size = n * dtypeByteSize(specialDtypes[t.name]);
    else if (target === undefined || isIntegral(own)) size = n * dtypeByteSize(own);
    else size = n * Math.min(target, dtypeByteSize(own));
    const parts = t.name.split('.');
    for (let i = 0; i <= parts.length; i++) {
      const key = parts.slice(0, i).join('.');
      sizes.set(key, (sizes.get(key) ?? 0) + size);
    }
  }
  return Object.fromEntries(sizes);
}

/** Total bytes of the model's buffers (Accelerate's `compute_module_total_buffer_size`). */
export function computeModuleTotalBufferSize(backend: AnyBackend, model: unknown, options: Omit<ModuleSizeOptions, 'buffersOnly'> = {}): number {
  return computeModuleSizes(backend, model, { ...options, buffersOnly: true })[''] ?? 0;
}

/** An entry of the work list of the device-map algorithm: a module, or a tensor that was split out of one. */
export interface TreatItem<M = unknown> {
  name: string;
  /** The module; undefined for a parameter or buffer entry. */
  module?: M;
}

/** Items of the root: its own parameters, its children, its own buffers (Accelerate's order). */
export function rootItems<M>(backend: AnyBackend, model: M): Array<TreatItem<M>> {
  const own = ownTensors(backend, model);
  return [
    ...own.parameters.map(([n]) => ({ name: n })),
    ...namedChildren(backend, model).map(([n, m]) => ({ name: n, module: m })),
    ...own.buffers.map((b) => ({ name: b.name })),
  ];
}

/**
 * The largest "layer" among `items` and the names reaching it: a layer is a
 * module without children, a module whose class is in `noSplitModuleClasses`,
 * or a lone tensor entry.
 */
export function getMaxLayerSize<M>(
  backend: AnyBackend,
  items: ReadonlyArray<TreatItem<M>>,
  moduleSizes: Record<string, number>,
  noSplitModuleClasses: readonly string[],
): { size: number; names: string[] } {
  let size = 0;
  let names: string[] = [];
  const queue = [...items];
  while (queue.length > 0) {
    const item = queue.shift()!;
    const children = item.module !== undefined ? namedChildren(backend, item.module) : [];
    if (children.length === 0 || noSplitModuleClasses.includes(className(backend, item.module))) {
      const s = moduleSizes[item.name] ?? 0;
      if (s > size) {
        size = s;
        names = [item.name];
      } else if (s === size) names.push(item.name);
    } else {
      queue.unshift(...children.map(([n, m]) => ({ name: `${item.name}.${n}`, module: m })));
    }
  }
  return { size, names };
}

/**
 * Total size of the model and its largest layer (Accelerate's
 * `calculate_maximum_sizes`), honouring `noSplitModuleClasses`.
 */
export function calculateMaximumSizes(
  backend: AnyBackend,
  model: unknown,
  noSplitModuleClasses: readonly string[] = [],
): { totalSize: number; largestLayer: { size: number; names: string[] } } {
  const sizes = computeModuleSizes(backend, model);
  return { totalSize: sizes[''] ?? 0, largestLayer: getMaxLayerSize(backend, rootItems(backend, model), sizes, noSplitModuleClasses) };
}
