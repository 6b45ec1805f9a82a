/**
 * Plugin composition: flattening, filtering, ordering and conflict checks,
 * done once when the Accelerator's configuration freezes; then hooks run in a
 * fixed order (`pre` plugins, normal, `post`; within those, hooks marked
 * `order: 'pre'` first and `order: 'post'` last).
 * @module
 */
import type { Plugin, PluginContext, PluginHook } from '../interfaces/plugin.js';
import type { ResolvedValues } from '../config/resolve.js';

/** Plugins as users pass them: nested arrays and falsy entries (conditional plugins) allowed. */
export type PluginOption = Plugin | false | null | undefined | PluginOption[];

/** The context a hook receives, built per plugin (each gets its own options and logger). */
export type PluginContextOf = (plugin: Plugin) => PluginContext;

/** Hook names a {@link Plugin} may define. */
export type PluginHookName = Exclude<keyof Plugin, 'name' | 'enforce' | 'conflictsWith' | 'apply' | 'section' | 'config' | 'strategy'>;

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
  plugins: readonly Plugin[];

  constructor(options: readonly PluginOption[], config: Readonly<ResolvedValues>) {
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

  /**
   * Add a plugin found after construction (the strategy package a
   * configuration names), at the end of its enforce class.
   */
  add(plugin: Plugin): void {
    if (this.plugins.some((p) => p.name === plugin.name)) throw new Error(`Plugin "${plugin.name}" was given twice. Pass each plugin once.`);
    const list = [...this.plugins, plugin];
    this.plugins = list.map((p, i) => ({ p, i })).sort((a, b) => enforceRank(a.p) - enforceRank(b.p) || a.i - b.i).map((x) => x.p);
    this.handlerCache.clear();
  }

  /** Run an object-transforming hook: each plugin may return a replacement. */
  async transform<T>(hook: 'prepareModel' | 'prepareOptimizer' | 'prepareDataLoader' | 'prepareScheduler', value: T, ctxOf: PluginContextOf): Promise<T> {
    let v = value;
    for (const { plugin, fn } of this.handlers(hook)) {
      const r = await fn(v, ctxOf(plugin));
      if (r !== undefined) v = r as T;
    }
    return v;
  }

  /** Run a notification hook on every plugin, in order. */
  async notify(hook: 'configResolved' | 'processGroupReady' | 'teardown', ctxOf: PluginContextOf): Promise<void> {
    for (const { plugin, fn } of this.handlers(hook)) await fn(ctxOf(plugin));
  }

  /** Run a notification hook of one plugin only (a plugin added late catches up). */
  async notifyOne(plugin: Plugin, hook: 'configResolved' | 'processGroupReady', ctx: PluginContext): Promise<void> {
    for (const h of this.handlers(hook)) if (h.plugin === plugin) await h.fn(ctx);
  }

  /**
   * Run a hook that a plugin may claim (returns true when one handled it).
   * Synchronous: backward and step sit on the hot path, and contexts are
   * built only for plugins that have the hook.
   */
  claim(hook: 'backward' | 'optimizerStep', value: unknown, ctxOf: PluginContextOf): boolean {
    const list = this.handlers(hook);
    for (const { plugin, fn } of list) {
      if (fn(value, ctxOf(plugin)) === true) return true;
    }
    return false;
  }
}
