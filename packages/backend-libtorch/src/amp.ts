/**
 * Automatic mixed precision: `autocast` (CPU autocast to bfloat16 exists in
 * libtorch 1.13; float16 on CUDA builds is not wired yet).
 * @module
 */
import type { MixedPrecision } from '@accelerate/core';
import { native } from './native.js';

/**
 * Run `fn` with autocast for `precision` (`bf16`: eligible CPU ops such as matmul and
 * linear run in bfloat16). `enabled: false` turns autocast off inside an enclosing region.
 * `fn` must be synchronous (autocast state is process-wide).
 */
export function autocast<R>(precision: MixedPrecision, fn: () => R, options: { enabled?: boolean } = {}): R {
  const enabled = options.enabled ?? precision !== 'no';
  if (enabled && precision !== 'bf16') {
    throw new Error(
      `autocast: precision '${precision}' is not supported on CPU by libtorch ${native.torchVersion}; use 'bf16' (fp16 and fp8 need a CUDA build)`,
    );
  }
  return withAutocastState({ enabled, dtype: 'bfloat16' }, fn);
}

/**
 * Run `fn` with the autocast state `state` (as `autocast` sets it, or as saved by an
 * activation checkpoint to recompute under the same state), restoring the previous one.
 * @internal
 */
export function withAutocastState<R>(state: { enabled: boolean; dtype: string }, fn: () => R): R {
  const prev = native.setAutocast(state.enabled, state.dtype);
  native.autocastEnter();
  try {
    return fn();
  } finally {
    native.autocastExit();
    native.setAutocast(prev.enabled, prev.dtype);
  }
}

/** Whether CPU autocast is on now. */
export function isAutocastEnabled(): boolean {
  const prev = native.setAutocast(false);
  native.setAutocast(prev.enabled, prev.dtype);
  return prev.enabled;
}
