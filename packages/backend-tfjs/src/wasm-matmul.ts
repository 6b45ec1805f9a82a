/**
 * A faster `BatchMatMul` for the wasm backend. tfjs-backend-wasm 4.x runs
 * `BatchMatMul` with `transposeA`/`transposeB` about 13x slower than on
 * pre-transposed inputs, and the gradient of every dense layer uses the
 * transposed forms — most of a training step. The replacement transposes the
 * flagged inputs with the wasm `Transpose` kernel, calls the original kernel
 * without transpose flags, and frees the temporaries.
 *
 * Nothing happens on import: call {@link registerWasmTransposedMatMul}
 * (`TfjsBackend` does when it runs on wasm, unless told not to).
 * @module
 */
import { tf } from './tf.js';

type KernelConfig = ReturnType<typeof tf.getKernel> & object;
type TensorInfo = { dataId: object; shape: number[]; dtype: string };
type KernelArgs = { inputs: Record<string, TensorInfo>; backend: { disposeData(dataId: object): void }; attrs: Record<string, unknown> };
type KernelFn = (args: KernelArgs) => TensorInfo;

let original: KernelConfig | undefined;

/** Swap the last two axes. */
function lastTwoSwapped(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return perm;
}

/**
 * Replace the wasm `BatchMatMul` kernel with the transpose-first version.
 * Needs `@tensorflow/tfjs-backend-wasm` loaded (its kernels registered).
 * Idempotent; returns true when the replacement is in place.
 */
export function registerWasmTransposedMatMul(): boolean {
  if (original) return true;
  const base = tf.getKernel('BatchMatMul', 'wasm');
  const transposeKernel = tf.getKernel('Transpose', 'wasm');
  if (!base || !transposeKernel) {
    throw new Error(
      'registerWasmTransposedMatMul: the wasm kernels are not registered. Load @tensorflow/tfjs-backend-wasm first (selectTfjsBackend({ engine: "wasm" }) does).',
    );
  }
  const baseFn = base.kernelFunc as unknown as KernelFn;
  const transpose = transposeKernel.kernelFunc as unknown as KernelFn;
  const kernelFunc: KernelFn = (args) => {
    const { a, b } = args.inputs;
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (!transposeA && !transposeB) return baseFn(args);
    const temps: TensorInfo[] = [];
    const flip = (x: TensorInfo): TensorInfo => {
      const t = transpose({ inputs: { x }, backend: args.backend, attrs: { perm: lastTwoSwapped(x.shape.length) } });
      temps.push(t);
      return t;
    };
    try {
      return baseFn({
        inputs: { a: transposeA ? flip(a) : a, b: transposeB ? flip(b) : b },
        backend: args.backend,
        attrs: { ...args.attrs, transposeA: false, transposeB: false },
      });
    } finally {
      for (const t of temps) args.backend.disposeData(t.dataId);
    }
  };
  tf.unregisterKernel('BatchMatMul', 'wasm');
  // Keep the original setup so a re-initialised wasm backend still binds its wasm function.
  tf.registerKernel({ kernelName: 'BatchMatMul', backendName: 'wasm', setupFunc: base.setupFunc, kernelFunc: kernelFunc as unknown as typeof base.kernelFunc });
  original = base;
  return true;
}

/** Put tfjs's own wasm `BatchMatMul` back (for comparisons and benchmarks). */
export function unregisterWasmTransposedMatMul(): void {
  if (!original) return;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel(original);
  original = undefined;
}

/** Whether {@link registerWasmTransposedMatMul} is in effect. */
export function isWasmTransposedMatMulRegistered(): boolean {
  return original !== undefined;
}
