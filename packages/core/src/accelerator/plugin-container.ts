/**
 * Plugin composition: flattening, filtering, ordering and conflict checks,
 * done once when the Accelerator's configuration freezes; then hooks run in a
 * fixed order (`pre` plugins, normal, `post`; within those, hooks marked
 * `order: 'pre'` first and `order: 'post'` last).
 * @module
 */
import type { Plugin, PluginContext, PluginHook } from '../interfaces/plugin.js';

/** Plugins as users pass them: nested arrays and falsy entries (conditional plugins) allowed. */
export type PluginOption = Plugin | false | null | undefined | PluginOption[];

/** Hook names a {@link Plugin} may define. */
export type PluginHookName = Exclude<keyof Plugin, 'name' | 'enforce' | 'conflictsWith' | 'apply'>;

function flatten(options: readonly PluginOption[], out: Plugin[] = []): Plugin[] {
  for (const o of options) {
    if (Array.isArray(o)) flatten(o, out);
    else if (o) out.push(o);
  }
  return out;
}

const enforceRank = (p: Plugin) => (p.enforce === 'pre' ? 0 : p.enforce === 'post' ? 2 : 1);

/** The resolved plugin list of one Accelerator. */
export class PluginContainer {
  /** Plugins in run order. */
  readonly plugins: readonly Plugin[];

  constructor(options: readonly PluginOption[], config: Readonly<Record<string, unknown>>) {
    const all = flatten(options);
    const seen = new Map<string, Plugin>();
    for (const p of all) {
      if (typeof p.name !== 'string' || p.name === '') {
        throw new TypeError('Every plugin needs a non-empty string `name` (it is also its checkpoint namespace).');
      }
      if (seen.has(p.name)) {
        throw new Error(`Plugin "${p.name}" was given twice. Pass each plugin once.`);
      }
      seen.set(p.name, p);
    }
    const applied = all.filter((p) => (p.apply ? p.apply(config) : true));
    for (const p of applied) {
      for (const other of p.conflictsWith ?? []) {
        if (applied.some((q) => q.name === other)) {
          throw new Error(
            `Plugins "${p.name}" and "${other}" cannot be used together: "${p.name}" declares a conflict with "${other}". Remove one of them.`,
          );
        }
      }
    }
    // Stable sort keeps the user's order within each enforce class.
    this.plugins = applied.map((p, i) => ({ p, i })).sort((a, b) => enforceRank(a.p) - enforceRank(b.p) || a.i - b.i).map((x) => x.p);
  }

  /** Handler lists by hook, built on first use: the plugin list is frozen, and backward / step ask every step. */
  private readonly handlerCache = new Map<PluginHookName, ReadonlyArray<{ plugin: Plugin; fn: (...args: any[]) => any }>>();

  /** Handlers of `hook` in run order. */
  handlers<K extends PluginHookName>(hook: K): ReadonlyArray<{ plugin: Plugin; fn: (...args: any[]) => any }> {
    let list = this.handlerCache.get(hook);
    if (!list) this.handlerCache.set(hook, (list = this.collect(hook)));
    return list;
  }

  private collect(hook: PluginHookName): Array<{ plugin: Plugin; fn: (...args: any[]) => any }> {
    const pre: Array<{ plugin: Plugin; fn: (...args: any[]) => any }> = [];
    const normal: typeof pre = [];
    const post: typeof pre = [];
    for (const plugin of this.plugins) {
      const h = plugin[hook] as PluginHook<(...args: any[]) => any> | undefined;
      if (!h) continue;
      if (typeof h === 'function') normal.push({ plugin, fn: h.bind(plugin) });
      else (h.order === 'pre' ? pre : h.order === 'post' ? post : normal).push({ plugin, fn: h.handler.bind(plugin) });
    }
    return [...pre, ...normal, ...post];
  }

  /** Run an object-transforming hook: each plugin may return a replacement. */
  async transform<T>(hook: 'prepareModel' | 'prepareOptimizer' | 'prepareDataLoader' | 'prepareScheduler', value: T, ctx: PluginContext): Promise<T> {
    let v = value;
    for (const { fn } of this.handlers(hook)) {
      const r = await fn(v, ctx);
      if (r !== undefined) v = r as T;
    }
    return v;
  }

  /** Run a notification hook on every plugin, in order. */
  async notify(hook: 'configResolved' | 'processGroupReady' | 'teardown', ctx: PluginContext): Promise<void> {
    for (const { fn } of this.handlers(hook)) await fn(ctx);
  }

  /** Run a hook that a plugin may claim (returns true when one handled it). Synchronous: backward and step sit on the hot path. */
  claim(hook: 'backward' | 'optimizerStep', value: unknown, ctx: PluginContext | (() => PluginContext)): boolean {
    const list = this.handlers(hook);
    if (list.length === 0) return false;
    // The context may be given lazily, so the common no-plugin case builds nothing.
    if (typeof ctx === 'function') ctx = ctx();
    for (const { fn } of list) {
      if (fn(value, ctx) === true) return true;
    }
    return false;
  }
}
