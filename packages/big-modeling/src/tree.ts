/**
 * The model as a tree of modules, read through the optional module-tree
 * methods of core's `models` backend capability: children, own parameters
 * and buffers, class names, tied parameters.
 * @module
 */
import { requireCapabilityMethod, type Backend, type BackendRoot, type ModelCapability } from '@accelerate/core';

/** A backend as big-modeling uses it (any tensor and model types). */
export type AnyBackend = Backend<any, any, any, any>;

/** Optional methods of the backend's `models` capability that big-modeling uses. */
export type BigModelingModelMethod = 'namedChildren' | 'moduleClassName' | 'ownTensors' | 'setModuleTensor' | 'addForwardHooks' | 'initOnDevice';

/** Optional tensor methods of the backend root that big-modeling uses. */
export type BigModelingTensorMethod = 'emptyTensor' | 'cast';

/** Optional backend methods big-modeling uses: `models` methods and root tensor methods. */
export type BigModelingMethod = BigModelingModelMethod | BigModelingTensorMethod;

/** The type of the backend method `K` (on `models` or on the root). */
export type BigModelingMethodType<K extends BigModelingMethod> = K extends BigModelingModelMethod
  ? NonNullable<ModelCapability<any, any>[K]>
  : K extends BigModelingTensorMethod
    ? NonNullable<BackendRoot<any>[K]>
    : never;

const TENSOR_METHODS: ReadonlySet<string> = new Set<BigModelingTensorMethod>(['emptyTensor', 'cast']);

/**
 * The backend's `method` (bound), or one error that names it, the backend and
 * what needs it: `models.<method>` through core's `requireCapabilityMethod`,
 * `emptyTensor` and `cast` on the backend itself.
 */
export function need<K extends BigModelingMethod>(backend: AnyBackend, method: K, forWhat: string): BigModelingMethodType<K> {
  if (TENSOR_METHODS.has(method)) {
    const f = backend[method as BigModelingTensorMethod];
    if (typeof f !== 'function') {
      throw new Error(
        `${forWhat} needs Backend.${method}(), which the ${JSON.stringify(backend.name)} backend does not implement. ` +
          'Use a backend with big-modeling support (@accelerate/backend-libtorch), or implement the optional tensor methods of the Backend interface.',
      );
    }
    return (f as (...a: unknown[]) => unknown).bind(backend) as BigModelingMethodType<K>;
  }
  const models = requireCapabilityMethod(backend, 'models', method as BigModelingModelMethod, forWhat);
  return (models[method as BigModelingModelMethod] as (...a: unknown[]) => unknown).bind(models) as BigModelingMethodType<K>;
}

/** Direct children of `module`. */
export function namedChildren<M>(backend: AnyBackend, module: M): Array<[string, M]> {
  return need(backend, 'namedChildren', 'walking the module tree')(module) as Array<[string, M]>;
}

/** `module` and all its descendants by dotted name (`''` for `module`), parents first. */
export function namedModules<M>(backend: AnyBackend, module: M, prefix = ''): Array<[string, M]> {
  const out: Array<[string, M]> = [[prefix, module]];
  for (const [n, c] of namedChildren(backend, module)) out.push(...namedModules(backend, c, prefix ? `${prefix}.${n}` : n));
  return out;
}

/** Class name of a module. */
export function className(backend: AnyBackend, module: unknown): string {
  return need(backend, 'moduleClassName', 'noSplitModuleClasses')(module);
}

/** Own parameters and buffers of one module. */
export function ownTensors<T>(
  backend: AnyBackend,
  module: unknown,
): { parameters: Array<[string, T]>; buffers: Array<{ name: string; tensor: T; persistent: boolean }> } {
  return need(backend, 'ownTensors', 'reading parameters and buffers per module')(module);
}

/** One tensor of the model, with the module that holds it. */
export interface ModelTensor<T = unknown, M = unknown> {
  /** Full dotted name (`layers.0.linear.weight`). */
  name: string;
  /** Name inside its module (`weight`). */
  local: string;
  /** Dotted name of the module holding it. */
  moduleName: string;
  module: M;
  tensor: T;
  kind: 'parameter' | 'buffer';
  /** False for buffers kept out of the state dict. */
  persistent: boolean;
}

/**
 * Every parameter and buffer of the model, in PyTorch's order (parameters of
 * the whole tree first, then buffers). `removeDuplicate` (default true)
 * lists a parameter shared by several modules once, under its first name,
 * as `named_parameters()` does.
 */
export function modelTensors<T, M>(
  backend: AnyBackend,
  model: M,
  options: { removeDuplicate?: boolean; buffers?: boolean; parameters?: boolean } = {},
): Array<ModelTensor<T, M>> {
  const { removeDuplicate = true, buffers = true, parameters = true } = options;
  const mods = namedModules(backend, model);
  const params: Array<ModelTensor<T, M>> = [];
  const bufs: Array<ModelTensor<T, M>> = [];
  const seen = new Set<unknown>();
  for (const [mn, m] of mods) {
    const own = ownTensors<T>(backend, m);
    const full = (n: string) => (mn ? `${mn}.${n}` : n);
    if (parameters) {
      for (const [n, t] of own.parameters) {
        if (removeDuplicate) {
          if (seen.has(t)) continue;
          seen.add(t);
        }
        params.push({ name: full(n), local: n, moduleName: mn, module: m, tensor: t, kind: 'parameter', persistent: true });
      }
    }
    if (buffers) {
      for (const b of own.buffers) bufs.push({ name: full(b.name), local: b.name, moduleName: mn, module: m, tensor: b.tensor, kind: 'buffer', persistent: b.persistent });
    }
  }
  return [...params, ...bufs];
}

/**
 * Groups of parameter names that are one parameter (tied weights), each
 * sorted, as Accelerate's `find_tied_parameters`.
 */
export function findTiedParameters(backend: AnyBackend, model: unknown): string[][] {
  const groups = new Map<unknown, string[]>();
  for (const t of modelTensors(backend, model, { removeDuplicate: false, buffers: false })) {
    const g = groups.get(t.tensor) ?? [];
    g.push(t.name);
    groups.set(t.tensor, g);
  }
  return [...groups.values()].filter((g) => g.length > 1).map((g) => [...new Set(g)].sort());
}

/** The submodule at dotted `name` (`''` is `model`). */
export function getSubmodule<M>(backend: AnyBackend, model: M, name: string): M {
  if (name === '') return model;
  let cur = model;
  for (const part of name.split('.')) {
    const next = namedChildren(backend, cur).find(([n]) => n === part);
    if (!next) throw new Error(`the model has no submodule ${JSON.stringify(name)} (no child ${JSON.stringify(part)}).`);
    cur = next[1];
  }
  return cur;
}

/** Numbers of elements of a shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
