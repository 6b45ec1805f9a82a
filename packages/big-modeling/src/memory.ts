/**
 * Memory budgets per device: `getMaxMemory` (what is there, or the user's
 * limits parsed) and `getBalancedMemory` (limits that spread a model evenly
 * over several GPUs), as Accelerate's.
 * @module
 */
import * as os from 'node:os';
import { convertFileSizeToInt } from '@accelerate/core/internal';
import { computeModuleSizes } from './sizes.js';
import { className, namedModules, type AnyBackend } from './tree.js';

/**
 * A device of a device map: a GPU index (`0` is `cuda:0`), `"cpu"`, `"mps"`
 * or `"disk"`.
 */
export type Device = number | string;

/** Budgets by device as the user writes them: bytes or size strings (`"2GiB"`, `"300MB"`). Integer-like keys are GPU indices. */
export type MaxMemoryInput = Record<string | number, number | string>;

/**
 * Budgets in bytes. Keys are strings (JavaScript object keys); integer keys,
 * the GPUs, come first in ascending order, then `mps`, `cpu`, `disk`.
 */
export type MaxMemory = Record<string, number>;

const NAMED_DEVICES = ['mps', 'cpu', 'disk'];

/** A map key as the device it names: `"0"` -> 0, `"cpu"` -> `"cpu"`. */
export function toDevice(key: string | number): Device {
  if (typeof key === 'number') return key;
  return /^\d+$/.test(key) ? Number(key) : key;
}

/** The backend device name of a map device: 0 -> `cuda:0`. */
export function deviceName(device: Device): string {
  return typeof device === 'number' ? `cuda:${device}` : device;
}

/** GPU index of a backend device name (`cuda` and `cuda:0` -> 0, `cuda:1` -> 1), undefined for other devices. */
export function gpuIndex(name: string): number | undefined {
  const m = /^(?:cuda|gpu|xpu|npu|mlu|hpu|musa)(?::(\d+))?$/.exec(name);
  return m ? Number(m[1] ?? 0) : undefined;
}

/** Names of the devices `backend` reports (`cpu`, `cuda:0`, …). */
export function availableDeviceNames(backend: AnyBackend): string[] {
  return backend.devices().map((d) => d.name);
}

/**
 * Whether `backend` has the map device `device`: `cpu`, `disk` and `meta`
 * always; a GPU index when the backend lists that GPU; any other name when
 * the backend lists it.
 */
export function isDeviceAvailable(backend: AnyBackend, device: Device): boolean {
  if (device === 'cpu' || device === 'disk' || device === 'meta') return true;
  const names = availableDeviceNames(backend);
  const idx = typeof device === 'number' ? device : gpuIndex(device);
  if (idx !== undefined) return names.some((n) => gpuIndex(n) === idx);
  return names.includes(String(device));
}

/** Free RAM as the OS reports it (MemAvailable on Linux), bounded by a cgroup limit when Node can see one. */
export function availableCpuMemory(): number {
  const free = os.freemem();
  const avail = (process as unknown as { availableMemory?: () => number }).availableMemory?.();
  return typeof avail === 'number' && avail > 0 ? Math.min(free, avail) : free;
}

/**
 * The memory budgets to plan with. Without `maxMemory`: free memory of every
 * GPU the backend reports (from `DeviceInfo.freeMemory`, else
 * `memoryInfo(device)` total minus reserved) and available RAM for `cpu`.
 * With it: size strings parsed, devices ordered GPUs (ascending), `mps`,
 * `cpu`, `disk`; any other key is an error. When `backend` is given, GPUs
 * (and `mps`) it does not have are left out, with one warning naming them
 * and the devices it has: nothing can be placed on them (Accelerate warns
 * "Device 0 is not available").
 */
export function getMaxMemory(maxMemory?: MaxMemoryInput, backend?: AnyBackend): MaxMemory {
  if (maxMemory === undefined) {
    const out: MaxMemory = {};
    for (const d of backend?.devices() ?? []) {
      const idx = gpuIndex(d.name);
      if (idx === undefined) continue;
      let free = d.freeMemory;
      const memoryInfo = backend?.memory?.info;
      if (free === undefined && memoryInfo) {
        const info = memoryInfo.call(backend!.memory, d.name);
        if (info.total !== undefined) free = info.total - (info.reserved ?? info.allocated);
      }
      if (free !== undefined) out[String(idx)] = free;
      else {
        process.emitWarning(
          `getMaxMemory: the ${backend!.name} backend reports no free memory for ${d.name}, so it gets no budget and nothing is placed on it; ` +
            `pass maxMemory (e.g. { ${idx}: "20GiB", cpu: "30GiB" }) to use it.`,
          { code: 'ACCELERATE_NO_GPU_MEMORY_INFO' },
        );
      }
    }
    out.cpu = availableCpuMemory();
    return out;
  }
  const gpus: number[] = [];
  const parsed = new Map<Device, number>();
  for (const [key, value] of Object.entries(maxMemory)) {
    const device = toDevice(key);
    if (typeof device === 'string' && !NAMED_DEVICES.includes(device)) {
      throw new Error(
        `maxMemory: device ${JSON.stringify(key)} is not recognized; use integers for GPUs (0, 1, …), "mps", "cpu" or "disk" (e.g. { 0: "10GiB", cpu: "30GB" }).`,
      );
    }
    let bytes: number;
    try {
      bytes = convertFileSizeToInt(value);
    } catch (cause) {
      throw new Error(`maxMemory[${JSON.stringify(key)}] = ${JSON.stringify(value)} is not a size: use bytes or a string such as "5GB" or "512MiB".`, { cause });
    }
    if (typeof device === 'number') gpus.push(device);
    parsed.set(device, bytes);
  }
  const out: MaxMemory = {};
  const missing: Device[] = [];
  for (const g of gpus.sort((a, b) => a - b)) {
    if (backend && !isDeviceAvailable(backend, g)) missing.push(g);
    else out[String(g)] = parsed.get(g)!;
  }
  for (const d of NAMED_DEVICES) {
    if (!parsed.has(d)) continue;
    if (backend && d === 'mps' && !isDeviceAvailable(backend, d)) missing.push(d);
    else out[d] = parsed.get(d)!;
  }
  if (missing.length > 0) {
    const label = missing.map((d) => (typeof d === 'number' ? `GPU ${d}` : d)).join(', ');
    process.emitWarning(
      `maxMemory: ${label} ${missing.length > 1 ? 'are' : 'is'} not available; the ${backend!.name} backend has ` +
        `${availableDeviceNames(backend!).join(', ') || 'no devices'}. ${missing.length > 1 ? 'They are' : 'It is'} left out of the budgets, so nothing is placed there ` +
        `(remove ${missing.length > 1 ? 'them' : 'it'} from maxMemory to silence this warning).`,
      { code: 'ACCELERATE_DEVICE_NOT_AVAILABLE' },
    );
  }
  return out;
}

/** Options of {@link getBalancedMemory}. */
export interface BalancedMemoryOptions {
  /** Classes whose instances are never split over devices (blocks with residual connections). */
  noSplitModuleClasses?: readonly string[];
  /** dtype the weights will be loaded in. */
  dtype?: string;
  /** Per-tensor dtypes. */
  specialDtypes?: Record<string, string>;
  /** Put as little as possible on GPU 0 (it then has room for generation buffers). */
  lowZero?: boolean;
}

/** Names of `sizes` that have no entry below them. */
function leaves(names: Iterable<string>): string[] {
  const all = [...names];
  const childCount = new Map<string, number>();
  for (const n of all) {
    if (n === '' || !n.includes('.')) continue;
    const parent = n.slice(0, n.lastIndexOf('.'));
    childCount.set(parent, (childCount.get(parent) ?? 0) + 1);
  }
  return all.filter((n) => n !== '' && (childCount.get(n) ?? 0) === 0);
}

/**
 * Budgets that spread the model over the GPUs instead of filling GPU 0
 * first (Accelerate's `get_balanced_memory`): each GPU but the last gets
 * model size / number of GPUs (one fewer with `lowZero`) plus 1.25 × the
 * larger of the biggest no-split block and the mean leaf-module size. With
 * no GPU the budgets are returned unchanged; with one GPU and no user budget
 * it gets 90% of its free memory.
 */
export function getBalancedMemory(backend: AnyBackend, model: unknown, maxMemory?: MaxMemoryInput, options: BalancedMemoryOptions = {}): MaxMemory {
  const userNotSet = maxMemory === undefined;
  const mm = getMaxMemory(maxMemory, backend);
  let lowZero = options.lowZero ?? false;
  const gpuKeys = Object.keys(mm).filter((k) => typeof toDevice(k) === 'number' && mm[k] > 0);
  const numDevices = gpuKeys.length;
  if (numDevices === 0) return mm;
  if (numDevices === 1) {
    lowZero = false;
    if (userNotSet) mm[gpuKeys[0]] = Math.floor(mm[gpuKeys[0]] * 0.9);
  }
  const sizes = computeModuleSizes(backend, model, { dtype: options.dtype, specialDtypes: options.specialDtypes });
  const total = sizes[''] ?? 0;
  let perGpu = Math.floor(total / (lowZero ? numDevices - 1 : numDevices));

  const noSplit = options.noSplitModuleClasses ?? [];
  let buffer = 0;
  if (noSplit.length > 0) {
    const found = new Map<string, number>();
    for (const [name, m] of namedModules(backend, model)) {
      if (name === '' || sizes[name] === undefined) continue;
      const cls = className(backend, m);
      if (noSplit.includes(cls) && !found.has(cls)) found.set(cls, sizes[name]);
      if (found.size === new Set(noSplit).size) break;
    }
    buffer = found.size > 0 ? Math.max(...found.values()) : 0;
  }
  // First leaves are tensors; once removed, the leaves are the final modules.
  const tensorLeaves = new Set(leaves(Object.keys(sizes)));
  const moduleNames = Object.keys(sizes).filter((n) => !tensorLeaves.has(n));
  const finals = leaves(moduleNames);
  const meanLeaves = Math.trunc(finals.reduce((a, n) => a + sizes[n], 0) / Math.max(finals.length, 1));
  buffer = Math.trunc(1.25 * Math.max(buffer, meanLeaves));
  perGpu += buffer;

  const gpus = gpuKeys.map(Number).sort((a, b) => a - b);
  for (const idx of gpus.slice(0, -1)) {
    mm[String(idx)] = Math.min(lowZero && idx === 0 ? mm['0'] : perGpu, mm[String(idx)]);
  }
  if (lowZero) {
    let others = 0;
    for (let i = 1; i < numDevices; i++) others += mm[String(i)] ?? 0;
    mm['0'] = Math.min(Math.max(0, total - others), mm['0']);
  }
  return mm;
}
