/**
 * Kwargs handlers: small option objects that customise one part of the
 * Accelerator (DDP, process-group init, loss scaling, autocast), as in
 * Accelerate. `toKwargs()` returns only the fields that differ from the
 * defaults, so a handler says exactly what the user changed.
 * @module
 */

/** Base class of every kwargs handler. */
export abstract class KwargsHandler<F extends object> {
  /** The handler's fields with their current values. */
  abstract readonly fields: Readonly<F>;
  /** Default values of every field. */
  protected abstract defaults(): F;

  /** Fields whose value differs from the default (Accelerate's `to_kwargs`). */
  toKwargs(): Partial<F> {
    const d = this.defaults() as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this.fields)) {
      if (JSON.stringify(v) !== JSON.stringify(d[k])) out[k] = v;
    }
    return out as Partial<F>;
  }
}

function merge<F extends object>(defaults: F, given: Partial<F> | undefined, handler: string): F {
  const out = { ...defaults };
  for (const [k, v] of Object.entries(given ?? {})) {
    if (!(k in defaults)) {
      throw new TypeError(`${handler} has no option "${k}". Valid options: ${Object.keys(defaults).join(', ')}.`);
    }
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

/** Options of {@link DistributedDataParallelKwargs}. */
import type { DistributedDataParallelOptions } from '../interfaces/backend.js';
export type { DistributedDataParallelOptions };

/** How data-parallel models are wrapped (Accelerate's `DistributedDataParallelKwargs`). */
export class DistributedDataParallelKwargs extends KwargsHandler<DistributedDataParallelOptions> {
  readonly fields: Readonly<DistributedDataParallelOptions>;
  constructor(options?: Partial<DistributedDataParallelOptions>) {
    super();
    this.fields = merge(this.defaults(), options, 'DistributedDataParallelKwargs');
  }
  protected defaults(): DistributedDataParallelOptions {
    return { dim: 0, broadcastBuffers: true, bucketCapMb: 25, findUnusedParameters: false, checkReduction: false, gradientAsBucketView: false, staticGraph: false, commHook: 'no' };
  }
}

/** Options of {@link InitProcessGroupKwargs}. */
export interface InitProcessGroupOptions {
  /** Transport; undefined = the backend's default (gloo on CPU, nccl on CUDA). */
  backend: string | undefined;
  initMethod: string | undefined;
  /** Collective timeout in seconds; undefined = 600 for nccl, 1800 otherwise. */
  timeoutSeconds: number | undefined;
}

/** How the process group is created (Accelerate's `InitProcessGroupKwargs`). */
export class InitProcessGroupKwargs extends KwargsHandler<InitProcessGroupOptions> {
  readonly fields: Readonly<InitProcessGroupOptions>;
  constructor(options?: Partial<InitProcessGroupOptions>) {
    super();
    this.fields = merge(this.defaults(), options, 'InitProcessGroupKwargs');
    const t = this.fields.timeoutSeconds;
    if (t !== undefined && !(t > 0)) {
      throw new RangeError(`InitProcessGroupKwargs.timeoutSeconds must be a positive number of seconds, got ${t}.`);
    }
  }
  protected defaults(): InitProcessGroupOptions {
    return { backend: undefined, initMethod: undefined, timeoutSeconds: undefined };
  }
  /** Effective timeout in milliseconds for `transport`. */
  timeoutMs(transport: string | undefined): number {
    return (this.fields.timeoutSeconds ?? (transport === 'nccl' ? 600 : 1800)) * 1000;
  }
}

/** Options of {@link GradScalerKwargs}. */
export interface GradScalerFields {
  initScale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  enabled: boolean;
}

/** fp16 loss scaling (Accelerate's `GradScalerKwargs`). */
export class GradScalerKwargs extends KwargsHandler<GradScalerFields> {
  readonly fields: Readonly<GradScalerFields>;
  constructor(options?: Partial<GradScalerFields>) {
    super();
    this.fields = merge(this.defaults(), options, 'GradScalerKwargs');
  }
  protected defaults(): GradScalerFields {
    return { initScale: 65536, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, enabled: true };
  }
}

/** Options of {@link AutocastKwargs}. */
export interface AutocastFields {
  enabled: boolean;
  cacheEnabled: boolean | undefined;
}

/** Autocast behaviour (Accelerate's `AutocastKwargs`). */
export class AutocastKwargs extends KwargsHandler<AutocastFields> {
  readonly fields: Readonly<AutocastFields>;
  constructor(options?: Partial<AutocastFields>) {
    super();
    this.fields = merge(this.defaults(), options, 'AutocastKwargs');
  }
  protected defaults(): AutocastFields {
    return { enabled: true, cacheEnabled: undefined };
  }
}

/** Any of the handlers the Accelerator accepts. */
export type AnyKwargsHandler = DistributedDataParallelKwargs | InitProcessGroupKwargs | GradScalerKwargs | AutocastKwargs;

/**
 * Index handlers by class; each class at most once (as Accelerate), with an
 * error naming the duplicated class.
 */
export function indexKwargsHandlers(handlers: readonly AnyKwargsHandler[]): {
  ddp?: DistributedDataParallelKwargs;
  initProcessGroup?: InitProcessGroupKwargs;
  gradScaler?: GradScalerKwargs;
  autocast?: AutocastKwargs;
} {
  const out: ReturnType<typeof indexKwargsHandlers> = {};
  const put = <K extends keyof typeof out>(key: K, h: NonNullable<(typeof out)[K]>) => {
    if (out[key]) throw new Error(`You can only pass one ${h.constructor.name} in kwargsHandlers; two were given.`);
    out[key] = h;
  };
  for (const h of handlers) {
    if (h instanceof DistributedDataParallelKwargs) put('ddp', h);
    else if (h instanceof InitProcessGroupKwargs) put('initProcessGroup', h);
    else if (h instanceof GradScalerKwargs) put('gradScaler', h);
    else if (h instanceof AutocastKwargs) put('autocast', h);
    else throw new TypeError(`Unsupported kwargs handler ${String((h as object)?.constructor?.name)}. Use one of DistributedDataParallelKwargs, InitProcessGroupKwargs, GradScalerKwargs, AutocastKwargs.`);
  }
  return out;
}
