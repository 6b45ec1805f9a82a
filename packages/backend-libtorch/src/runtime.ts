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
/** What {@link allocatorStats} reports about the CPU allocator's block cache. */
export interface AllocatorStats {
  /** Bytes of freed tensor blocks kept for reuse. */
  cachedBytes: number;
  /** Cap on {@link AllocatorStats.cachedBytes} (`ACCELERATE_TORCH_CPU_CACHE_MB`; 0 = caching off). */
  limitBytes: number;
  /** Allocations of 32 KiB and more served from the cache. */
  hits: number;
  /** Allocations of 32 KiB and more that went to malloc. */
  misses: number;
}
/**
 * The CPU allocator keeps freed blocks of 32 KiB and more for reuse by the next
 * request of the same size (a training step frees and allocates the same sizes every
 * step; fresh memory from the kernel costs a page fault per 4 KiB). Its counters.
 */
export function allocatorStats(): AllocatorStats {
  return native.allocatorStats();
}
/** Return the CPU allocator's cached blocks to malloc (as `torch.cuda.empty_cache()` does for CUDA). */
export function emptyCache(): void {
  native.emptyCache();
}
/** What {@link mallocStats} reports: glibc's `mallinfo2()` summed over every malloc arena. */
export interface MallocStats {
  /** Bytes of heap obtained with sbrk/mmap'd arenas (not counting large mmapped blocks). */
  arenaBytes: number;
  /** Bytes in large blocks malloc mapped separately. */
  mmapBytes: number;
  /** Bytes handed out by malloc and not freed yet. */
  inUseBytes: number;
  /** Bytes free inside the arenas (fragmentation shows here). */
  freeBytes: number;
  /** Free bytes at the top of the main heap that malloc_trim could return. */
  releasableBytes: number;
}
/**
 * The process's malloc counters (every thread, libtorch, V8's off-heap allocations and
 * the addon alike), or undefined where the C library has no `mallinfo2` (non-glibc, glibc
 * < 2.33). In a long run, a growing {@link MallocStats.inUseBytes} is a leak and a
 * growing {@link MallocStats.freeBytes} is fragmentation; `bench/soak.ts` reports both.
 */
export function mallocStats(): MallocStats | undefined {
  const s = native.mallocStats();
  return s.inUseBytes === undefined ? undefined : (s as MallocStats);
}
/** libtorch's version string, e.g. `1.13.0`. */
export const version: string = native.torchVersion;
