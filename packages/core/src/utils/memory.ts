/**
 * Retry a training function with smaller batch sizes after out-of-memory
 * errors (Accelerate's `find_executable_batch_size`).
 * @module
 */

/** Substrings that mark an error message as "out of memory" (CUDA/HIP/XPU, cuDNN, CPU allocator, HPU). */
export const OUT_OF_MEMORY_MESSAGES: readonly string[] = [
  ' out of memory.',
  'cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.',
  "DefaultCPUAllocator: can't allocate memory",
  'FATAL ERROR :: MODULE:PT_DEVMEM Allocation failed',
];

/**
 * Accelerate's default test for "retry with a smaller batch": an `Error`
 * whose message contains one of {@link OUT_OF_MEMORY_MESSAGES}. Backends
 * provide a sharper test as `backend.memory.isOutOfMemoryError`.
 */
export function shouldReduceBatchSize(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return OUT_OF_MEMORY_MESSAGES.some((m) => error.message.includes(m));
}

/** Options of {@link findExecutableBatchSize}. */
export interface FindExecutableBatchSizeOptions {
  /** First batch size tried (default 128). */
  startingBatchSize?: number;
  /** Next batch size after an out-of-memory error (default `Math.trunc(current * 0.9)`). */
  reduceBatchSizeFn?: (current: number) => number;
  /** Which errors mean "out of memory" (default {@link shouldReduceBatchSize}; pass `backend.memory.isOutOfMemoryError`). */
  isOutOfMemoryError?: (error: unknown) => boolean;
  /** Release cached device memory before the first try and after each out-of-memory error (e.g. `backend.memory.emptyCache`). */
  clearCache?: () => void;
}

function isPromiseLike(x: unknown): x is PromiseLike<unknown> {
  return typeof x === 'object' && x !== null && typeof (x as { then?: unknown }).then === 'function';
}

/**
 * Wrap `fn(batchSize, ...args)` so that calling the wrapper with `...args`
 * runs `fn` with `startingBatchSize` and, whenever it fails with an
 * out-of-memory error, runs it again with a smaller batch size (×0.9,
 * truncated, by default). Other errors propagate. The batch size that
 * worked is kept for later calls of the same wrapper. Works with sync and
 * async `fn` (an async `fn` gives an async wrapper).
 *
 * @throws Error "No executable batch size found, reached zero." when the batch size reaches 0.
 * @throws TypeError when the wrapper is called with the batch size as well (it is injected).
 *
 * @example
 * const train = findExecutableBatchSize(async (batchSize: number, model: Model) => { ... });
 * await train(model);
 */
export function findExecutableBatchSize<A extends unknown[], R>(
  fn: (batchSize: number, ...args: A) => R,
  options: FindExecutableBatchSizeOptions = {},
): (...args: A) => R {
  const {
    startingBatchSize = 128,
    reduceBatchSizeFn = (current: number) => Math.trunc(current * 0.9),
    isOutOfMemoryError = shouldReduceBatchSize,
    clearCache,
  } = options;
  if (!Number.isInteger(startingBatchSize) || startingBatchSize < 0) {
    throw new RangeError(`findExecutableBatchSize: startingBatchSize must be a non-negative integer, got ${startingBatchSize}.`);
  }
  let batchSize = startingBatchSize;
  const name = fn.name || 'function';

  const reduceAfter = (error: unknown): void => {
    if (!isOutOfMemoryError(error)) throw error;
    clearCache?.();
    const next = reduceBatchSizeFn(batchSize);
    if (!Number.isInteger(next) || next < 0) {
      throw new RangeError(`findExecutableBatchSize: reduceBatchSizeFn returned ${next}; it must return a non-negative integer.`);
    }
    batchSize = next;
  };
  const checkNotZero = (): void => {
    if (batchSize === 0) throw new Error('No executable batch size found, reached zero.');
  };

  const retryAsync = async (pending: PromiseLike<unknown>, args: A): Promise<unknown> => {
    for (;;) {
      try {
        return await pending;
      } catch (error) {
        reduceAfter(error);
      }
      checkNotZero();
      try {
        pending = Promise.resolve(fn(batchSize, ...args));
      } catch (error) {
        pending = Promise.reject(error);
      }
    }
  };

  const wrapper = (...args: A): R => {
    // fn.length counts declared parameters: getting as many arguments as that means the batch size was passed too.
    if (fn.length > 0 && args.length >= fn.length) {
      const rest = args.slice(1).map((a) => String(a)).join(', ');
      throw new TypeError(
        `Batch size was passed into \`${name}\` as the first argument when called. ` +
          `Remove it, as findExecutableBatchSize passes it itself: \`${name}(${rest})\``,
      );
    }
    clearCache?.();
    for (;;) {
      checkNotZero();
      let result: R;
      try {
        result = fn(batchSize, ...args);
      } catch (error) {
        reduceAfter(error);
        continue;
      }
      if (isPromiseLike(result)) return retryAsync(result, args) as R;
      return result;
    }
  };
  Object.defineProperty(wrapper, 'name', { value: name });
  return wrapper;
}
