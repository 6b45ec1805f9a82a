/**
 * Auto-wrap policies: which modules of a model become FSDP units, and which
 * parameters each unit owns. The root is always a unit; TRANSFORMER_BASED_WRAP
 * wraps every module of the named classes, SIZE_BASED_WRAP follows torch's
 * `size_based_auto_wrap_policy` (children first, a module wrapped when its
 * not-yet-wrapped parameters reach the threshold), a function policy decides
 * per module. Works on any backend whose `models` capability has the module
 * tree (`namedChildren`, `moduleClassName`, `ownTensors`).
 * @module
 */
import type { ModelCapability } from '@accelerate/core';
import type { AutoWrapPlan } from './options.js';

/** One FSDP unit: a module and the parameters it shards. */
export interface WrapUnit<M, T = unknown> {
  module: M;
  /** Dotted module path, `''` for the root. */
  name: string;
  className: string;
  /**
   * The own parameters of the unit's modules that are not inside a nested
   * unit, by their full dotted names (as `models.namedParameters` names them),
   * in module pre-order. A parameter shared by several modules (tied) is
   * counted once, in the first unit (post-order) that holds it.
   */
  params: Array<{ name: string; param: T }>;
}

/** The result of {@link planUnits}. */
export interface UnitPlan<M, T = unknown> {
  /** Post-order: nested units before their ancestors, the root last. */
  units: WrapUnit<M, T>[];
  /** Parameters of ignored modules (left unsharded, in no unit), by full name. */
  ignored: Array<{ name: string; param: T }>;
}

/** Options of {@link planUnits}. */
export interface PlanUnitsOptions<T> {
  /** Elements of a parameter (e.g. `t => backend.shape(t).reduce((a, b) => a * b, 1)`); needed by size and function policies. */
  numel?: (param: T) => number;
}

/** Modules torch's size policy never recurses into (wrapped whole with their parent). */
const FORCE_LEAF_CLASSES = new Set(['MultiheadAttention']);
/** Containers torch's size policy recurses into but never wraps. */
const EXCLUDE_WRAP_CLASSES = new Set(['ModuleList', 'ModuleDict']);

interface Node<M, T> {
  module: M;
  name: string;
  className: string;
  depth: number;
  ignored: boolean;
  children: Node<M, T>[];
  own: T[];
  wrap: boolean;
}

type TreeCapability<T, M> = ModelCapability<T, M> & Required<Pick<ModelCapability<T, M>, 'namedChildren' | 'moduleClassName' | 'ownTensors'>>;

function needTree<T, M>(models: ModelCapability<T, M>): TreeCapability<T, M> {
  for (const method of ['namedChildren', 'moduleClassName', 'ownTensors'] as const) {
    if (typeof models[method] !== 'function') {
      throw new Error(`FSDP auto-wrapping needs models.${method}() from the backend's "models" capability, which this backend does not implement.`);
    }
  }
  return models as TreeCapability<T, M>;
}

/**
 * The FSDP units of `model` under `policy`, and the parameters left out by
 * `isIgnored` (a module whose dotted name it accepts is left out with its
 * whole subtree, never wrapped).
 *
 * - `none`: the root alone.
 * - `transformer`: every module whose class name is listed. A listed class the
 *   model does not contain is an error naming it and the classes the model has.
 *   An empty list falls back to the model's `_no_split_modules` /
 *   `noSplitModules` (Accelerate's default), else is an error.
 * - `size`: torch's `size_based_auto_wrap_policy` with `_recursive_wrap`:
 *   recurse into a module whose not-yet-wrapped parameters are at least
 *   `minNumParams` (not into MultiheadAttention), children first, then wrap it
 *   when what remains unwrapped is still at least `minNumParams` (never a
 *   ModuleList / ModuleDict). `minNumParams` 0 wraps nothing by size.
 * - `function`: called for every non-root, non-ignored module in post-order
 *   with the parameters of its subtree not yet in a nested unit.
 */
export function planUnits<M, T>(
  model: M,
  models: ModelCapability<T, M>,
  policy: AutoWrapPlan,
  isIgnored: (name: string) => boolean,
  options: PlanUnitsOptions<T> = {},
): UnitPlan<M, T> {
  const tree = needTree(models);
  if (isIgnored('')) {
    throw new Error('FSDP ignoredModules matches the root module (its name is the empty string): the root cannot be ignored. Make the pattern match submodule names only.');
  }

  // The module tree, each module once (a module registered twice is visited at its first place, as torch's named_modules does).
  const seenModules = new Set<M>();
  const build = (module: M, name: string, depth: number, parentIgnored: boolean): Node<M, T> => {
    seenModules.add(module);
    const ignored = parentIgnored || (name !== '' && isIgnored(name));
    const node: Node<M, T> = {
      module,
      name,
      className: tree.moduleClassName(module),
      depth,
      ignored,
      children: [],
      own: tree.ownTensors(module).parameters.map(([, p]) => p),
      wrap: depth === 0,
    };
    for (const [child, m] of tree.namedChildren(module)) {
      if (seenModules.has(m)) continue;
      node.children.push(build(m, name ? `${name}.${child}` : child, depth + 1, ignored));
    }
    return node;
  };
  const root = build(model, '', 0, false);

  const nameOf = new Map<T, string>();
  for (const [n, p] of tree.namedParameters(model)) if (!nameOf.has(p)) nameOf.set(p, n);
  const ignoredParams = new Set<T>();
  const walk = (node: Node<M, T>, fn: (n: Node<M, T>) => void) => {
    fn(node);
    for (const c of node.children) walk(c, fn);
  };
  walk(root, (n) => {
    if (n.ignored) for (const p of n.own) ignoredParams.add(p);
  });

  const numel = (p: T): number => {
    if (!options.numel) throw new Error(`FSDP ${policy.kind === 'size' ? 'SIZE_BASED_WRAP' : 'function'} auto-wrap policy needs the parameters' sizes: pass numel to planUnits.`);
    return options.numel(p);
  };
  /** Params (distinct, not ignored, not yet wrapped) of a subtree, and their element count. */
  const wrapped = new Set<T>();
  const unwrappedNumel = (node: Node<M, T>): number => {
    const seen = new Set<T>();
    let total = 0;
    walk(node, (n) => {
      if (n.ignored) return;
      for (const p of n.own) {
        if (seen.has(p) || ignoredParams.has(p) || wrapped.has(p)) continue;
        seen.add(p);
        total += numel(p);
      }
    });
    return total;
  };
  const markWrapped = (node: Node<M, T>) => {
    node.wrap = true;
    walk(node, (n) => {
      if (!n.ignored) for (const p of n.own) if (!ignoredParams.has(p)) wrapped.add(p);
    });
  };

  switch (policy.kind) {
    case 'none':
      break;
    case 'transformer': {
      let classes = policy.classes;
      if (classes.length === 0) {
        const m = model as { _no_split_modules?: unknown; noSplitModules?: unknown };
        const fallback = m._no_split_modules ?? m.noSplitModules;
        if (Array.isArray(fallback) && fallback.every((c) => typeof c === 'string') && fallback.length > 0) classes = fallback as string[];
        else {
          throw new Error(
            'FSDP TRANSFORMER_BASED_WRAP needs the layer classes to wrap: set fsdp_transformer_layer_cls_to_wrap in the config file (FSDP_TRANSFORMER_CLS_TO_WRAP), or pass transformerLayerClsToWrap to fsdp({...}).',
          );
        }
      }
      const present = new Set<string>();
      walk(root, (n) => present.add(n.className));
      const missing = classes.filter((c) => !present.has(c));
      if (missing.length > 0) {
        throw new Error(
          `FSDP TRANSFORMER_BASED_WRAP: the model contains no module of class ${missing.map((c) => JSON.stringify(c)).join(', ')} ` +
            `(fsdp_transformer_layer_cls_to_wrap / transformerLayerClsToWrap). The model's module classes: ${[...present].sort().join(', ')}.`,
        );
      }
      const wanted = new Set(classes);
      const post = (n: Node<M, T>) => {
        if (n.ignored) return;
        for (const c of n.children) post(c);
        if (n.depth > 0 && wanted.has(n.className)) markWrapped(n);
      };
      post(root);
      break;
    }
    case 'size': {
      const min = policy.minNumParams;
      if (min <= 0) break; // 0 wraps nothing by size (Accelerate drops the policy)
      const rec = (n: Node<M, T>): void => {
        if (n.ignored) return;
        const nonwrapped = unwrappedNumel(n);
        if (nonwrapped < min || FORCE_LEAF_CLASSES.has(n.className)) return;
        for (const c of n.children) rec(c);
        if (n.depth > 0 && !EXCLUDE_WRAP_CLASSES.has(n.className) && unwrappedNumel(n) >= min) markWrapped(n);
      };
      rec(root);
      break;
    }
    case 'function': {
      const post = (n: Node<M, T>) => {
        if (n.ignored) return;
        for (const c of n.children) post(c);
        if (n.depth > 0 && policy.fn({ name: n.name, className: n.className, numParams: unwrappedNumel(n), depth: n.depth })) markWrapped(n);
      };
      post(root);
      break;
    }
  }

  // Units in post-order; each takes the parameters of its subtree no earlier unit took.
  const units: WrapUnit<M, T>[] = [];
  const taken = new Set<T>();
  const collect = (n: Node<M, T>) => {
    if (n.ignored) return;
    for (const c of n.children) collect(c);
    if (!n.wrap) return;
    const params: Array<{ name: string; param: T }> = [];
    walk(n, (m) => {
      if (m.ignored) return;
      m.own.forEach((p, i) => {
        if (taken.has(p) || ignoredParams.has(p)) return;
        taken.add(p);
        params.push({ name: nameOf.get(p) ?? fallbackName(m, tree, i), param: p });
      });
    });
    units.push({ module: n.module, name: n.name, className: n.className, params });
  };
  collect(root);

  const ignored: Array<{ name: string; param: T }> = [];
  const ignoredSeen = new Set<T>();
  walk(root, (n) => {
    for (const p of n.own) {
      if (!ignoredParams.has(p) || ignoredSeen.has(p)) continue;
      ignoredSeen.add(p);
      ignored.push({ name: nameOf.get(p) ?? '', param: p });
    }
  });
  return { units, ignored };
}

function fallbackName<M, T>(node: Node<M, T>, tree: TreeCapability<T, M>, index: number): string {
  const local = tree.ownTensors(node.module).parameters[index]?.[0] ?? String(index);
  return node.name ? `${node.name}.${local}` : local;
}
