/**
 * Plugins (FSDP, DeepSpeed, Megatron, offloading, user plugins) hook into the
 * Accelerator at fixed points. The shape follows Vite's plugin API: an object
 * with a `name`, an optional `enforce` order, and hooks that are functions or
 * `{ handler, order }` objects.
 * @module
 */

/** A hook as a bare function, or with an explicit order among plugins. */
export type PluginHook<F extends (...args: any[]) => any> =
  | F
  | { handler: F; order?: 'pre' | 'post' | null };

/** What hooks receive: a read-only view of the Accelerator they run in. */
export interface PluginContext {
  /** The resolved, frozen configuration (see {@link ResolvedConfig}). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly processIndex: number;
  readonly numProcesses: number;
  readonly device: string;
}

/**
 * A plugin. Every hook is optional. Hooks that transform an object return the
 * replacement, or `undefined` to keep it.
 */
export interface Plugin {
  /** Unique name; also the plugin's namespace inside checkpoints. */
  readonly name: string;
  /** Run before (`pre`) or after (`post`) normal plugins. */
  readonly enforce?: 'pre' | 'post';
  /** Names of plugins this one cannot be combined with (checked once, with both names in the error). */
  readonly conflictsWith?: readonly string[];
  /** Return false to leave this plugin out for the resolved configuration. */
  apply?(config: Readonly<Record<string, unknown>>): boolean;

  configResolved?: PluginHook<(ctx: PluginContext) => void | Promise<void>>;
  processGroupReady?: PluginHook<(ctx: PluginContext) => void | Promise<void>>;
  prepareModel?: PluginHook<(model: unknown, ctx: PluginContext) => unknown>;
  prepareOptimizer?: PluginHook<(optimizer: unknown, ctx: PluginContext) => unknown>;
  prepareDataLoader?: PluginHook<(loader: unknown, ctx: PluginContext) => unknown>;
  prepareScheduler?: PluginHook<(scheduler: unknown, ctx: PluginContext) => unknown>;
  /** Return true when the plugin performed the backward pass itself. */
  backward?: PluginHook<(loss: unknown, ctx: PluginContext) => boolean | void>;
  /** Return true when the plugin performed the optimizer step itself. */
  optimizerStep?: PluginHook<(optimizer: unknown, ctx: PluginContext) => boolean | void>;
  /** Write the plugin's state into `dir` (its own namespace folder). */
  saveState?: PluginHook<(dir: string, ctx: PluginContext) => void | Promise<void>>;
  loadState?: PluginHook<(dir: string, ctx: PluginContext) => void | Promise<void>>;
  teardown?: PluginHook<(ctx: PluginContext) => void | Promise<void>>;
}
