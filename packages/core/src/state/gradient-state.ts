/**
 * Gradient synchronisation and accumulation state (Accelerate's
 * `GradientState`), plus the rules that decide when gradients sync and how
 * often a scheduler steps. Backend-independent.
 * @module
 */

/** What GradientState needs from a data loader that is being iterated. */
export interface ActiveLoader {
  /** True while the loader's last batch is being processed. */
  readonly endOfDataloader: boolean;
  /**
   * Number of real samples in the last global batch (`len % totalBatchSize`),
   * or -1 when unknown or when the loader drops its last batch.
   */
  readonly remainder: number;
}

/** Accelerate's `GradientAccumulationPlugin`. */
export interface GradientAccumulationOptions {
  /** Accumulation steps (≥ 1). */
  numSteps?: number;
  /** Scale the scheduler's steps for accumulation. Kept for name parity; see {@link schedulerStepsPerCall}. */
  adjustScheduler?: boolean;
  /** Force a sync on the active loader's last batch, and restart counting there. */
  syncWithDataloader?: boolean;
  /** Sync gradients on every batch even while accumulating (distributed only). */
  syncEachBatch?: boolean;
}

interface SharedGradientState {
  syncGradients: boolean;
  numSteps: number;
  adjustScheduler: boolean;
  syncWithDataloader: boolean;
  syncEachBatch: boolean;
  /** Micro-steps since the last sync (Accelerate keeps it on the Accelerator as `step`). */
  step: number;
  loaders: ActiveLoader[];
}

function freshState(): SharedGradientState {
  return {
    syncGradients: true,
    numSteps: 1,
    adjustScheduler: false,
    syncWithDataloader: true,
    syncEachBatch: false,
    step: 0,
    loaders: [],
  };
}

let shared: SharedGradientState = freshState();

/**
 * Process-wide gradient state. Every instance reads and writes the same data
 * (as in Accelerate), so a prepared loader, the Accelerator and user code all
 * agree on `syncGradients` and on which loader is active.
 */
export class GradientState {
  /** Set up (or update) the shared state from an accumulation plugin. Omitted fields keep their current value. */
  constructor(options?: GradientAccumulationOptions) {
    if (options) this.configure(options);
  }

  /** Apply accumulation options; validates `numSteps`. */
  configure(options: GradientAccumulationOptions): void {
    if (options.numSteps !== undefined) {
      if (!Number.isInteger(options.numSteps) || options.numSteps < 1) {
        throw new RangeError(
          `gradientAccumulationSteps must be a whole number >= 1, got ${String(options.numSteps)}. Use 1 to disable accumulation.`,
        );
      }
      shared.numSteps = options.numSteps;
    }
    if (options.adjustScheduler !== undefined) shared.adjustScheduler = options.adjustScheduler;
    if (options.syncWithDataloader !== undefined) shared.syncWithDataloader = options.syncWithDataloader;
    if (options.syncEachBatch !== undefined) shared.syncEachBatch = options.syncEachBatch;
  }

  /** Forget everything (tests, or a fresh run in the same process). */
  static reset(): void {
    shared = freshState();
  }

  /** Whether the current micro-step synchronises gradients and steps the optimizer. */
  get syncGradients(): boolean {
    return shared.syncGradients;
  }
  set syncGradients(value: boolean) {
    shared.syncGradients = value;
  }

  /** Accumulation steps. */
  get numSteps(): number {
    return shared.numSteps;
  }
  set numSteps(value: number) {
    this.configure({ numSteps: value });
  }

  get adjustScheduler(): boolean {
    return shared.adjustScheduler;
  }
  get syncWithDataloader(): boolean {
    return shared.syncWithDataloader;
  }
  get syncEachBatch(): boolean {
    return shared.syncEachBatch;
  }

  /**
   * Micro-steps counted by `advance` (restarts at the end of a data loader);
   * a step syncs when it is a multiple of `numSteps`. Settable so a resumed
   * run continues the accumulation window where the checkpoint left it.
   */
  get step(): number {
    return shared.step;
  }
  set step(value: number) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`GradientState.step must be a whole number >= 0, got ${String(value)}.`);
    }
    shared.step = value;
  }

  /** Non-default plugin fields, as Accelerate's `plugin_kwargs`. */
  get pluginKwargs(): GradientAccumulationOptions {
    const out: GradientAccumulationOptions = {};
    if (shared.numSteps !== 1) out.numSteps = shared.numSteps;
    if (shared.adjustScheduler) out.adjustScheduler = true;
    if (!shared.syncWithDataloader) out.syncWithDataloader = false;
    if (shared.syncEachBatch) out.syncEachBatch = true;
    return out;
  }

  /** The innermost loader being iterated, or undefined. */
  get activeDataloader(): ActiveLoader | undefined {
    return shared.loaders[shared.loaders.length - 1];
  }

  /** True while any prepared loader is being iterated. */
  get inDataloader(): boolean {
    return shared.loaders.length > 0;
  }

  /** True while the active loader processes its last batch; false when none is active. */
  get endOfDataloader(): boolean {
    return this.activeDataloader?.endOfDataloader ?? false;
  }

  /** The active loader's remainder, or -1 when none is active. */
  get remainder(): number {
    return this.activeDataloader?.remainder ?? -1;
  }

  /** Called by a loader when its iteration starts. */
  addDataloader(loader: ActiveLoader): void {
    shared.loaders.push(loader);
  }

  /**
   * Called by a loader when its iteration ends, normally or by `break`
   * (Accelerate leaves a broken-out loader active until GC; we do not).
   */
  removeDataloader(loader: ActiveLoader): void {
    const i = shared.loaders.lastIndexOf(loader);
    if (i >= 0) shared.loaders.splice(i, 1);
  }

  /**
   * Advance the accumulation counter for one micro-step and decide whether it
   * syncs (Accelerate's `_do_sync`): on the active loader's last batch (when
   * `syncWithDataloader`) it syncs and the counter restarts; otherwise it
   * syncs every `numSteps` micro-steps. Returns the new `syncGradients`.
   */
  advance(): boolean {
    if (shared.syncWithDataloader && this.endOfDataloader) {
      shared.step = 0;
      shared.syncGradients = true;
    } else {
      shared.step += 1;
      shared.syncGradients = shared.step % shared.numSteps === 0;
    }
    return shared.syncGradients;
  }
}

/** Inputs to {@link schedulerStepsPerCall}. */
export interface SchedulerStepContext {
  /** `Accelerator({ stepSchedulerWithOptimizer })`, default true. */
  stepWithOptimizer: boolean;
  /** Whether the current micro-step syncs. */
  syncGradients: boolean;
  /** Whether any optimizer bound to the scheduler skipped its last step (fp16 overflow). */
  optimizerStepWasSkipped: boolean;
  /** `DataLoaderConfiguration.splitBatches`. */
  splitBatches: boolean;
  numProcesses: number;
}

/**
 * How many times a prepared scheduler advances for one `scheduler.step()` call
 * (Accelerate's `AcceleratedScheduler.step`): 1 when not tied to the
 * optimizer; 0 while accumulating or after a skipped optimizer step; 1 with
 * split batches; otherwise once per process, because each process saw only
 * 1/P of the data a single-process schedule was written for.
 */
export function schedulerStepsPerCall(ctx: SchedulerStepContext): number {
  if (!ctx.stepWithOptimizer) return 1;
  if (!ctx.syncGradients) return 0;
  if (ctx.optimizerStepWasSkipped) return 0;
  if (ctx.splitBatches) return 1;
  return ctx.numProcesses;
}
