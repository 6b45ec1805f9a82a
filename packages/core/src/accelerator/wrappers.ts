/**
 * `AcceleratedOptimizer` and `AcceleratedScheduler`: thin Proxies around the
 * user's optimizer and scheduler. They keep the original object's type (so
 * `opt.step()` and any backend-specific method still type-check) and change
 * only what Accelerate changes: no step / zero-grad while accumulating, loss
 * scaling for fp16, and scheduler steps counted in optimizer updates.
 * @module
 */
import { requireCapability, type Backend, type GradScaler } from '../interfaces/backend.js';
import { GradientState, schedulerStepsPerCall } from '../state/gradient-state.js';

const RAW = Symbol.for('accelerate.raw');
const OPT_STATE = Symbol.for('accelerate.optimizerState');

/** Step bookkeeping of one prepared optimizer. */
export interface OptimizerStepState {
  /** True when the last `step()` was skipped because fp16 gradients overflowed. */
  stepWasSkipped: boolean;
  /** Optimizer updates actually applied. */
  updates: number;
}

/** Extra members every prepared optimizer has. */
export interface AcceleratedOptimizerMembers {
  /** True when the last `step()` was skipped (inf/NaN gradients under fp16). */
  readonly stepWasSkipped: boolean;
}

/** The object behind a prepared optimizer / scheduler / model wrapper, or the object itself. */
export function unwrapPrepared<T>(obj: T): T {
  const raw = (obj as Record<symbol, unknown> | null | undefined)?.[RAW];
  return (raw ?? obj) as T;
}

/** True when `obj` came out of `Accelerator.prepare` as an optimizer or scheduler proxy. */
export function isPreparedWrapper(obj: unknown): boolean {
  return typeof obj === 'object' && obj !== null && (obj as Record<symbol, unknown>)[RAW] !== undefined;
}

function proxyWith<T extends object>(target: T, overrides: Record<PropertyKey, () => unknown>): T {
  return new Proxy(target, {
    get(t, prop) {
      if (prop === RAW) return t;
      const o = overrides[prop as string];
      if (o) return o();
      const v = Reflect.get(t, prop, t);
      // Bind methods to the real object so private fields (#x) keep working.
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

/**
 * Wrap an optimizer. `step()` runs only on sync steps; with a scaler it
 * unscales, skips on inf/NaN and updates the scale. `zeroGrad(setToNone = true)`
 * runs only on sync steps.
 */
export function wrapOptimizer<O extends object>(
  optimizer: O,
  backend: Backend<any, any, O, any>,
  options: {
    scaler?: GradScaler<any, O>;
    onStep?: (optimizer: O) => boolean;
    /** Runs after every step that updated the parameters (the strategy's `afterOptimizerStep`). */
    afterStep?: () => void | Promise<void>;
  } = {},
): O & AcceleratedOptimizerMembers {
  const ops = requireCapability(backend, 'optimizers', 'Accelerator.prepare(optimizer)');
  const gs = new GradientState();
  const state: OptimizerStepState = { stepWasSkipped: false, updates: 0 };
  const afterStep = options.afterStep;
  // Returns the strategy's promise when its after-step work is asynchronous
  // (e.g. averaging parameters across ranks): `await optimizer.step()` then.
  const step = (): void | Promise<void> => {
    if (!gs.syncGradients) return;
    if (options.onStep?.(optimizer)) {
      state.stepWasSkipped = false;
      state.updates += 1;
      return afterStep?.();
    }
    if (options.scaler) {
      const stepped = options.scaler.step(optimizer);
      options.scaler.update();
      state.stepWasSkipped = !stepped;
      if (!stepped) return;
      state.updates += 1;
    } else {
      ops.step(optimizer);
      state.stepWasSkipped = false;
      state.updates += 1;
    }
    return afterStep?.();
  };
  const zeroGrad = (setToNone = true) => {
    if (gs.syncGradients) ops.zeroGrad(optimizer, setToNone);
  };
  return proxyWith(optimizer, {
    step: () => step,
    zeroGrad: () => zeroGrad,
    stepWasSkipped: () => state.stepWasSkipped,
    [OPT_STATE as unknown as string]: () => state,
  }) as O & AcceleratedOptimizerMembers;
}

/** Step bookkeeping of a prepared optimizer (for schedulers and reports). */
export function optimizerStepState(optimizer: unknown): OptimizerStepState | undefined {
  return (optimizer as Record<symbol, OptimizerStepState> | null)?.[OPT_STATE];
}

/**
 * Wrap a scheduler. Each `step()` advances the real scheduler
 * {@link schedulerStepsPerCall} times: never while accumulating or after a
 * skipped optimizer step, and once per process otherwise (a schedule written
 * for one process covers P times the batches one rank sees).
 */
export function wrapScheduler<S extends object>(
  scheduler: S,
  backend: Backend<any, any, any, S>,
  options: {
    optimizers: () => unknown[];
    stepWithOptimizer: boolean;
    splitBatches: boolean;
    numProcesses: number;
  },
): S {
  const gs = new GradientState();
  const realStep = () => {
    if (backend.optimizers?.schedulerStep) backend.optimizers.schedulerStep(scheduler);
    else (scheduler as unknown as { step(): void }).step();
  };
  let lastUpdates = -1;
  let warned = false;
  const step = () => {
    const states = options.optimizers().map((o) => optimizerStepState(o));
    const skipped = states.some((st) => st?.stepWasSkipped ?? false);
    const updates = states.reduce((sum, st) => sum + (st?.updates ?? 0), 0);
    // Schedules count optimizer updates: stepping twice with no update in between is almost always a loop bug.
    if (options.stepWithOptimizer && gs.syncGradients && !skipped && updates === lastUpdates && !warned) {
      warned = true;
      process.emitWarning(
        'scheduler.step() was called again without an optimizer update in between. Prepared schedulers count optimizer updates: call optimizer.step() before scheduler.step(), once per update (inside accumulate, both are skipped on non-sync micro-steps).',
        'AccelerateWarning',
      );
    }
    lastUpdates = updates;
    const n = schedulerStepsPerCall({
      stepWithOptimizer: options.stepWithOptimizer,
      syncGradients: gs.syncGradients,
      optimizerStepWasSkipped: skipped,
      splitBatches: options.splitBatches,
      numProcesses: options.numProcesses,
    });
    for (let i = 0; i < n; i++) realStep();
  };
  return proxyWith(scheduler, { step: () => step });
}
