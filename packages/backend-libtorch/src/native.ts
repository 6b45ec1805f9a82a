/**
 * Loads the compiled addon (`build/Release/torch_native.node`) and looks ATen
 * operators up by schema name. Internal: users go through {@link Tensor}, `nn`, `optim`.
 * @module
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A native tensor handle: owns one reference to an `at::Tensor`. */
export interface NativeHandle {
  dispose(): void;
  isDisposed(): boolean;
}

/** Argument accepted by the generic operator call. */
export type NativeArg = NativeHandle | number | boolean | string | bigint | null | undefined | NativeArg[] | object;

/** The C++ optimizer object (optim.cc). */
export interface NativeOptimizer {
  addGroup(params: NativeHandle[]): void;
  step(hyper: Float64Array): void;
  zeroGrad(setToNone: boolean): void;
  getState(group: number, index: number): { step: number; buffers: Array<NativeHandle | null> };
  setState(group: number, index: number, step: number, buffers: Array<NativeHandle | null>): void;
  moveState(): void;
  hasState(): boolean;
  replaceGroups(groups: NativeHandle[][]): void;
}

/** Everything the addon exports (see native/*.cc). */
export interface NativeAddon {
  torchVersion: string;
  PREV: object;
  NativeOptimizer: new (kind: 'sgd' | 'adam' | 'adamw') => NativeOptimizer;
  opLookup(name: string, overload: string): { id: number; args: string[]; returns: number; schema: string };
  op(id: number, ...args: NativeArg[]): any;
  chain(input: NativeHandle, steps: NativeArg[][]): NativeHandle;
  fromBuffer(data: ArrayBufferView, shape: number[], dtype: string, device?: string): NativeHandle;
  toBuffer(h: NativeHandle): ArrayBuffer;
  shareBuffer(h: NativeHandle): ArrayBuffer;
  shape(h: NativeHandle): number[];
  strides(h: NativeHandle): number[];
  dtype(h: NativeHandle): string;
  device(h: NativeHandle): string;
  numel(h: NativeHandle): number;
  dim(h: NativeHandle): number;
  isContiguous(h: NativeHandle): boolean;
  item(h: NativeHandle): number | boolean;
  sameTensor(a: NativeHandle, b: NativeHandle): boolean;
  newRef(h: NativeHandle): NativeHandle;
  setData(dst: NativeHandle, src: NativeHandle): void;
  storageBytes(h: NativeHandle): number;
  handleStats(): { live: number; finalized: number; accountedBytes: number };
  emptyCache(): void;
  mallocStats(): { arenaBytes?: number; mmapBytes?: number; inUseBytes?: number; freeBytes?: number; releasableBytes?: number };
  allocatorStats(): { cachedBytes: number; limitBytes: number; hits: number; misses: number };
  cpuMemory(): { counted: boolean; allocated: number; peakAllocated: number; limit: number | undefined };
  resetCpuPeak(): void;
  setCpuMemoryLimit(bytes: number | undefined): void;
  shardView(flat: NativeHandle, offset: number, shape: number[]): NativeHandle;
  shardFlatten(t: NativeHandle): NativeHandle;
  shardCopy(dst: NativeHandle, src: NativeHandle): void;
  shardAdd(dst: NativeHandle, src: NativeHandle): void;
  shardZero(t: NativeHandle): void;
  freeStorage(flat: NativeHandle): void;
  allocateStorage(flat: NativeHandle): void;
  hasStorage(flat: NativeHandle): boolean;
  leafView(t: NativeHandle, requiresGrad: boolean): NativeHandle;
  addTensorGradHook(t: NativeHandle, fn: () => void): (() => void) | undefined;
  queueBackwardCallback(fn: () => void): void;
  checkpointAttach(
    inputs: NativeHandle[],
    outputs: NativeHandle[],
    backward: (grads: Array<NativeHandle | null>, inputs: NativeHandle[]) => Array<NativeHandle | null>,
  ): NativeHandle[];
  backward(t: NativeHandle | NativeHandle[], grad: NativeHandle | null | Array<NativeHandle | null>, retainGraph?: boolean, createGraph?: boolean): void;
  grad(h: NativeHandle): NativeHandle | null;
  setGrad(h: NativeHandle, g: NativeHandle | null): void;
  requiresGrad(h: NativeHandle): boolean;
  setRequiresGrad(h: NativeHandle, v: boolean): void;
  isLeaf(h: NativeHandle): boolean;
  retainGrad(h: NativeHandle): void;
  gradFnName(h: NativeHandle): string | null;
  setGradEnabled(v: boolean): boolean;
  isGradEnabled(): boolean;
  clipGradNorm(params: NativeHandle[], maxNorm: number, normType: number): number;
  clipGradValue(params: NativeHandle[], clip: number): void;
  scaleGrads(params: NativeHandle[], factor: number): boolean;
  initUniform(h: NativeHandle, low: number, high: number): void;
  initNormal(h: NativeHandle, mean: number, std: number): void;
  initFill(h: NativeHandle, v: number): void;
  copyNoGrad(dst: NativeHandle, src: NativeHandle): void;
  manualSeed(seed: number): void;
  getRngState(): Uint8Array;
  setRngState(s: Uint8Array): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  setAutocast(enabled: boolean, dtype?: string): { enabled: boolean; dtype: string };
  autocastEnter(): number;
  autocastExit(): number;
  cudaAvailable(): boolean;
  cudaDeviceCount(): number;
  parallelInfo(): string;
}

const HOW_TO =
  'Provide libtorch and rebuild: LIBTORCH=/path/to/libtorch, or a Python torch (`pip install torch`), ' +
  'or on Debian/Ubuntu `apt-get install -y libtorch-dev libgloo-dev libopenblas0`; then run ' +
  '`npm rebuild @accelerate/backend-libtorch` (or `node scripts/build-native.mjs` in the package).';

/**
 * The OpenBLAS kernel set to force on this CPU, or undefined to leave OpenBLAS's own
 * choice. OpenBLAS picks its kernels from the CPU model at load time, and releases
 * older than the CPU (Debian bookworm's 0.3.21 on Sapphire/Emerald Rapids, model 207)
 * fall back to their SSE3 "Prescott" kernels: an MLP step of Debian's libtorch ran
 * 16.4 ms instead of 5.2 ms here. Naming a kernel set from the CPU's feature flags
 * avoids that; only libtorch builds that use OpenBLAS (Debian's) read it.
 *
 * The choice is the safe one, `Haswell` (AVX2 + FMA), also on AVX-512 CPUs: some
 * OpenBLAS builds compute wrong results or crash with their SkylakeX kernels on some
 * processors, which is why such machines are often set to Haswell. A user who has
 * measured SkylakeX right on their CPU names it: `OPENBLAS_CORETYPE=SkylakeX`.
 * An explicit OPENBLAS_CORETYPE wins; ACCELERATE_OPENBLAS_CORETYPE=0 turns this off.
 * @internal
 */
export function openblasCoreType(env: NodeJS.ProcessEnv = process.env, cpuinfo?: string): string | undefined {
  if (env.OPENBLAS_CORETYPE || env.ACCELERATE_OPENBLAS_CORETYPE === '0') return undefined;
  if (process.platform !== 'linux' || process.arch !== 'x64') return undefined;
  let info = cpuinfo;
  if (info === undefined) {
    try {
      info = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const line = /^flags\s*:(.*)$/m.exec(info)?.[1];
  if (!line) return undefined;
  const flags = new Set(line.trim().split(/\s+/));
  if (['avx2', 'fma'].every((f) => flags.has(f))) return 'Haswell';
  return undefined;
}

function load(): NativeAddon {
  // Before libopenblas loads with the addon (it reads the variable once, at load).
  const core = openblasCoreType();
  if (core) process.env.OPENBLAS_CORETYPE = core;
  const here = dirname(fileURLToPath(import.meta.url));
  // src/ (tests through tsx/vitest) and dist/ both sit one level under the package root.
  const root = join(here, '..');
  const path = process.env.ACCELERATE_TORCH_ADDON ?? join(root, 'build/Release/torch_native.node');
  if (!existsSync(path)) {
    throw new Error(`@accelerate/backend-libtorch: the native addon ${path} is not built. ${HOW_TO}`);
  }
  const require = createRequire(import.meta.url);
  try {
    return require(path) as NativeAddon;
  } catch (e) {
    throw new Error(
      `@accelerate/backend-libtorch: loading ${path} failed: ${(e as Error).message}. The addon must be rebuilt against the libtorch it runs with. ${HOW_TO}`,
    );
  }
}

/** The loaded addon (loaded on first import of this package). */
export const native: NativeAddon = load();

const ids = new Map<string, number>();

/** Operator id for `aten::name.overload`, looked up once. */
export function opId(name: string, overload = ''): number {
  const key = overload ? `${name}.${overload}` : name;
  let id = ids.get(key);
  if (id === undefined) {
    id = native.opLookup(name.includes('::') ? name : `aten::${name}`, overload).id;
    ids.set(key, id);
  }
  return id;
}

/** Reduction codes of ATen's loss functions. */
export const REDUCTION = { none: 0, mean: 1, sum: 2 } as const;

/** The C++ collective handle (c10d.cc). */
export interface NativeWork {
  wait(): Promise<NativeHandle[] | undefined>;
  /** wait() blocking the JS thread (no promise, no worker thread); throws what wait() rejects with. */
  waitSync(): NativeHandle[] | undefined;
  isCompleted(): boolean;
}

/** The C++ process group (c10d.cc). */
export interface NativeGroup {
  allReduce(t: NativeHandle, op: string): NativeWork;
  broadcast(t: NativeHandle, src: number): NativeWork;
  allGather(t: NativeHandle): NativeWork;
  /** all_gather_into_tensor: rank r's `input` lands in `output`'s elements [r*n, (r+1)*n). */
  allGatherInto(output: NativeHandle, input: NativeHandle): NativeWork;
  /** reduce_scatter_tensor: chunk `rank` of the reduced `input` into `output`; op 'sum' | 'avg' | 'max' | 'min' | 'product'. */
  reduceScatterInto(output: NativeHandle, input: NativeHandle, op: string): NativeWork;
  send(t: NativeHandle, dst: number, tag: number): NativeWork;
  recv(t: NativeHandle, src: number, tag: number): NativeWork;
  barrier(): NativeWork;
  newGroup(ranks: number[], name: string, host: string): Promise<NativeGroup | null>;
  storeSet(key: string, value: Uint8Array): Promise<void>;
  storeGet(key: string): Promise<Uint8Array>;
  storeAdd(key: string, delta: number): Promise<number>;
  destroy(): void;
}

/** c10d entry point (kept apart from NativeAddon so the core addon type stays small). */
export const c10d = native as unknown as {
  initGroup(host: string, port: number, rank: number, world: number, timeoutMs: number, threads?: number, agentStorePrefix?: string): Promise<NativeGroup>;
  /** How this build implements the flat collectives: 'native' (libtorch 2.x gloo) or the emulation (1.13). */
  c10dImplementations: { allGatherInto: string; reduceScatterInto: string };
};
