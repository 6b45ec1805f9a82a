/**
 * Learning-rate schedulers (`torch.optim.lr_scheduler`) and the HF warmup
 * schedules (`get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup`).
 * @module
 */
import type { Optimizer } from './optimizer.js';

/**
 * Base class. As in PyTorch, constructing a scheduler performs step 0 (sets each
 * group's lr to its value at epoch 0), and each {@link step} advances one epoch.
 */
export abstract class LRScheduler {
  lastEpoch: number;
  readonly baseLrs: number[];
  private lastLr: number[] = [];

  constructor(
    readonly optimizer: Optimizer,
    lastEpoch = -1,
  ) {
    for (const g of optimizer.paramGroups) if (g.initialLr === undefined) g.initialLr = g.lr;
    this.baseLrs = optimizer.paramGroups.map((g) => g.initialLr as number);
    this.lastEpoch = lastEpoch;
  }

  /** Call at the end of construction in subclasses (after their own fields are set). */
  protected initialStep(): void {
    this.step();
  }

  /** Learning rates at {@link lastEpoch}. */
  abstract getLr(): number[];

  /** Advance one epoch and update every group's lr. */
  step(): void {
    this.lastEpoch += 1;
    const lrs = this.getLr();
    this.optimizer.paramGroups.forEach((g, i) => (g.lr = lrs[i]));
    this.lastLr = lrs;
  }

  /** The lrs the last step set. */
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  stateDict(): Record<string, unknown> {
    return { last_epoch: this.lastEpoch, base_lrs: [...this.baseLrs], _last_lr: [...this.lastLr] };
  }
  /**
   * Restore a {@link stateDict} (also one converted from PyTorch's
   * `scheduler.state_dict()`): `last_epoch`, `base_lrs` when present (as
   * PyTorch does, so the schedule continues from the saved base rates even if
   * this optimizer was built with another lr), and the lrs last set.
   */
  loadStateDict(s: Record<string, unknown>): void {
    this.lastEpoch = s.last_epoch as number;
    if (Array.isArray(s.base_lrs) && s.base_lrs.length === this.baseLrs.length && s.base_lrs.every((x) => typeof x === 'number')) {
      this.baseLrs.splice(0, this.baseLrs.length, ...(s.base_lrs as number[]));
    }
    if (Array.isArray(s._last_lr)) {
      this.lastLr = [...(s._last_lr as number[])];
      this.optimizer.paramGroups.forEach((g, i) => (g.lr = this.lastLr[i] ?? g.lr));
    }
  }
}

/** lr = base lr × lambda(epoch), one lambda for all groups or one per group. */
export class LambdaLR extends LRScheduler {
  private readonly lambdas: Array<(epoch: number) => number>;
  constructor(optimizer: Optimizer, lrLambda: ((epoch: number) => number) | Array<(epoch: number) => number>, lastEpoch = -1) {
    super(optimizer, lastEpoch);
    this.lambdas = Array.isArray(lrLambda) ? lrLambda : optimizer.paramGroups.map(() => lrLambda);
    if (this.lambdas.length !== optimizer.paramGroups.length) {
      throw new Error(`LambdaLR: expected ${optimizer.paramGroups.length} lr lambdas, got ${this.lambdas.length}`);
    }
    this.initialStep();
  }
  getLr(): number[] {
    return this.baseLrs.map((b, i) => b * this.lambdas[i](this.lastEpoch));
  }
}

/** lr = base lr × gamma^⌊epoch / stepSize⌋. */
export class StepLR extends LRScheduler {
  constructor(
    optimizer: Optimizer,
    readonly stepSize: number,
    readonly gamma = 0.1,
    lastEpoch = -1,
  ) {
    super(optimizer, lastEpoch);
    this.initialStep();
  }
  getLr(): number[] {
    return this.baseLrs.map((b) => b * this.gamma ** Math.floor(this.lastEpoch / this.stepSize));
  }
}

/** Linear warmup from 0 over `numWarmupSteps`, then linear decay to 0 at `numTrainingSteps`. */
export function getLinearScheduleWithWarmup(optimizer: Optimizer, numWarmupSteps: number, numTrainingSteps: number, lastEpoch = -1): LambdaLR {
  return new LambdaLR(
    optimizer,
    (step) => {
      if (step < numWarmupSteps) return step / Math.max(1, numWarmupSteps);
      return Math.max(0, (numTrainingSteps - step) / Math.max(1, numTrainingSteps - numWarmupSteps));
    },
    lastEpoch,
  );
}

/** Linear warmup, then cosine decay (`numCycles` = 0.5 decays to 0 once). */
export function getCosineScheduleWithWarmup(
  optimizer: Optimizer,
  numWarmupSteps: number,
  numTrainingSteps: number,
  numCycles = 0.5,
  lastEpoch = -1,
): LambdaLR {
  return new LambdaLR(
    optimizer,
    (step) => {
      if (step < numWarmupSteps) return step / Math.max(1, numWarmupSteps);
      const progress = (step - numWarmupSteps) / Math.max(1, numTrainingSteps - numWarmupSteps);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * numCycles * 2 * progress)));
    },
    lastEpoch,
  );
}

/** Constant lr after a linear warmup. */
export function getConstantScheduleWithWarmup(optimizer: Optimizer, numWarmupSteps: number, lastEpoch = -1): LambdaLR {
  return new LambdaLR(optimizer, (step) => (step < numWarmupSteps ? step / Math.max(1, numWarmupSteps) : 1), lastEpoch);
}
