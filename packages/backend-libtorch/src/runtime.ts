/**
 * Process-wide settings: seeds, RNG state, threads, version.
 * @module
 */
import { native } from './native.js';

/** Seed libtorch's default generator (`torch.manual_seed`). */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}
/** The CPU generator's state (`torch.get_rng_state()`), as bytes. */
export function getRngState(): Uint8Array {
  return native.getRngState();
}
/** Restore a state from {@link getRngState}. */
export function setRngState(state: Uint8Array): void {
  native.setRngState(state);
}
/** Intra-op threads (`torch.set_num_threads`). */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}
export function getNumThreads(): number {
  return native.getNumThreads();
}
/** Whether this libtorch build sees a CUDA device. */
export function cudaAvailable(): boolean {
  return native.cudaAvailable();
}
/** libtorch's version string, e.g. `1.13.0`. */
export const version: string = native.torchVersion;
