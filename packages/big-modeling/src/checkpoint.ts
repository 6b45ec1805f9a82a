/**
 * Filling a model from a checkpoint, shard by shard and tensor by tensor,
 * each read straight into its own memory and placed where a device map says
 * (disk-mapped tensors go to the offload folder without staying in memory):
 * `loadCheckpointInModel` and `loadCheckpointAndDispatch`, as Accelerate's.
 * @module
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, type DType } from '@accelerate/core';
import { resolveCheckpointFiles } from '@accelerate/core/internal';
import { checkDeviceMapDevices, deviceFor, inferAutoDeviceMap, type DeviceMap, type DeviceMapStrategy } from './device-map.js';
import { dispatchModel } from './dispatch.js';
import { deviceName, type MaxMemoryInput } from './memory.js';
import { offloadWeight, saveOffloadIndex, tensorFromBytes, type OffloadIndex } from './offload.js';
import { findTiedParameters, modelTensors, need, type AnyBackend, type ModelTensor } from './tree.js';

/** Options of {@link loadCheckpointInModel}. */
export interface LoadCheckpointOptions {
  /** Where each module's tensors go (longest matching prefix); default: all on the cpu. */
  deviceMap?: DeviceMap;
  /** Folder for tensors mapped to `disk` (required when the map uses disk). */
  offloadFolder?: string;
  /** Cast floating tensors to this dtype (integers and bools are kept); default: the model's own dtypes. */
  dtype?: DType;
  /** Modules (name fragments) kept in float32 when `dtype` is float16. */
  keepInFp32Modules?: readonly string[];
  /** Offload buffers mapped to disk too (default: they are loaded on the cpu). */
  offloadBuffers?: boolean;
  /** Accepted for Accelerate compatibility: cpu-mapped weights are already loaded one tensor at a time here, so no temporary folder is needed. */
  offloadStateDict?: boolean;
  /** Fail on tensors the model lacks or the checkpoint lacks (default false: they are reported). */
  strict?: boolean;
  /**
   * Map shards into memory (copy-on-write, shared with the page cache) instead
   * of reading them, when the backend can (`Backend.mapFile`), as safetensors
   * does in Python. Default true; false copies every tensor into fresh memory.
   */
  mmap?: boolean;
}

/** What {@link loadCheckpointInModel} did. */
export interface LoadCheckpointResult {
  /** Model tensors the checkpoint did not have. */
  missingKeys: string[];
  /** Checkpoint tensors the model does not have (skipped). */
  unexpectedKeys: string[];
  /** Tensors written to the offload folder. */
  offloaded: string[];
  /** Shard files read, in order. */
  files: string[];
}

const isFloat = (d: string) => d.startsWith('float') || d.startsWith('bfloat');

function readAt(fd: number, target: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < target.length) {
    const n = fs.readSync(fd, target, done, Math.min(target.length - done, 1 << 30), position + done);
    if (n === 0) throw new Error(`${file} ended while reading a tensor; the checkpoint is truncated.`);
    done += n;
  }
}

const COPY_CHUNK = 8 << 20;
let copyBuffer: Uint8Array | undefined;

/** Copy `length` bytes at `offset` of an open file into a new file `out`. */
function copyRange(fd: number, offset: number, length: number, out: string, file: string): void {
  copyBuffer ??= new Uint8Array(COPY_CHUNK);
  const w = fs.openSync(out, 'w');
  try {
    let done = 0;
    if (length === 0) return;
    while (done < length) {
      const want = Math.min(COPY_CHUNK, length - done);
      const chunk = copyBuffer.subarray(0, want);
      readAt(fd, chunk, offset + done, file);
      let written = 0;
      while (written < want) written += fs.writeSync(w, chunk, written, want - written);
      done += want;
    }
  } finally {
    fs.closeSync(w);
  }
}

/**
 * Load a checkpoint into `model` (Accelerate's `load_checkpoint_in_model`).
 * `checkpoint` is a safetensors file, a `*.index.json`, or a folder with
 * `model.safetensors` or exactly one `*.index.json`; shards are opened one
 * at a time. Each tensor is read into fresh memory of its own and swapped
 * into the model (parameters on `meta` after {@link initEmptyWeights} become
 * real), so the peak is the model plus one tensor; where the backend maps
 * files (`Backend.mapFile`, libtorch does) tensors are views of the mapped
 * shards and nothing is copied until pages are touched (`mmap: false` to copy). With a device map,
 * `disk` tensors are written to `offloadFolder` (`.dat` + index.json) and
 * stay `meta` in the model; GPU tensors are moved to their GPU.
 * Floating tensors take the model's dtype, or `dtype` when given.
 */
export async function loadCheckpointInModel(backend: AnyBackend, model: unknown, checkpoint: string, options: LoadCheckpointOptions = {}): Promise<LoadCheckpointResult> {
  const { deviceMap, offloadFolder, dtype, keepInFp32Modules = [], offloadBuffers = false, strict = false, mmap = true } = options;
  const set = need(backend, 'setModuleTensor', 'loadCheckpointInModel');
  if (deviceMap) checkDeviceMapDevices(backend, deviceMap, 'loadCheckpointInModel');
  if (deviceMap && Object.values(deviceMap).includes('disk') && offloadFolder === undefined) {
    throw new Error('loadCheckpointInModel: the device map puts some weights on "disk"; pass offloadFolder, a folder to write them to.');
  }
  if (offloadFolder !== undefined) fs.mkdirSync(offloadFolder, { recursive: true });
  const { files } = await resolveCheckpointFiles(checkpoint);
  const targets = new Map<string, ModelTensor>();
  for (const t of modelTensors(backend, model, { removeDuplicate: false })) if (t.persistent) targets.set(t.name, t);
  const loaded = new Map<string, { device: string; file?: string }>();
  const unexpectedKeys: string[] = [];
  const offloaded: string[] = [];
  const index: OffloadIndex = {};

  for (const file of files) {
    const st = await SafetensorsFile.open(file);
    const fd = fs.openSync(file, 'r');
    const mapped = mmap && backend.mapFile ? backend.mapFile(file) : undefined;
    const readTensor = (byteOffset: number, shape: number[], dt: DType, toDisk: boolean): unknown => {
      // Disk-bound tensors are copied through a short-lived buffer: reading them through
      // the mapping would leave their pages resident for as long as the shard stays mapped.
      if (mapped && !toDisk) {
        try {
          return mapped.tensor(byteOffset, shape, dt);
        } catch {
          // Misaligned for a view: read it instead.
        }
      }
      return tensorFromBytes(backend, shape, dt, (bytes) => readAt(fd, bytes, byteOffset, file));
    };
    try {
      for (const name of st.offsetKeys()) {
        const target = targets.get(name);
        if (!target) {
          unexpectedKeys.push(name);
          continue;
        }
        const info = st.info(name);
        if (info.hostDType === undefined) throw new Error(`${file}: tensor ${JSON.stringify(name)} has dtype ${info.dtype}, which this loader cannot hold.`);
        const want = [...backend.shape(target.tensor)];
        if (want.length !== info.shape.length || want.some((d, i) => d !== info.shape[i])) {
          throw new Error(`loadCheckpointInModel: size mismatch for ${name}: the checkpoint has shape [${info.shape.join(', ')}], the model [${want.join(', ')}].`);
        }
        let device = deviceMap ? deviceFor(deviceMap, name) : 'cpu';
        if (device === undefined) throw new Error(`loadCheckpointInModel: ${name} is not in the device map (no key is a prefix of it); add its module or "".`);
        if (device === 'disk' && target.kind === 'buffer' && !offloadBuffers) device = 'cpu';

        const own = backend.dtype(target.tensor);
        let castTo: DType | undefined;
        if (isFloat(info.hostDType)) {
          const keep = dtype === 'float16' && keepInFp32Modules.some((m) => name.includes(m));
          castTo = dtype !== undefined ? (keep ? 'float32' : dtype) : isFloat(own) ? own : undefined;
          if (castTo === info.hostDType) castTo = undefined;
        }
        if (device === 'disk' && castTo === undefined) {
          // Same bytes on both sides: copy the file range to <name>.dat through a small reused buffer.
          copyRange(fd, info.byteOffset, info.byteLength, join(offloadFolder!, `${name}.dat`), file);
          index[name] = { dtype: info.hostDType, shape: [...info.shape] };
          offloaded.push(name);
          loaded.set(name, { device: 'disk' });
          continue;
        }
        let t = readTensor(info.byteOffset, [...info.shape], info.hostDType, device === 'disk');
        if (castTo !== undefined) {
          const c = need(backend, 'cast', 'loading with a dtype')(t, castTo);
          backend.dispose?.(t);
          t = c;
        }
        if (device === 'disk') {
          offloadWeight(backend, t, name, offloadFolder!, index);
          backend.dispose?.(t);
          offloaded.push(name);
          loaded.set(name, { device: 'disk' });
          continue;
        }
        const dev = deviceName(device);
        if (dev !== 'cpu') {
          const moved = backend.toDevice(t, dev);
          backend.dispose?.(t);
          t = moved;
        }
        set(target.module, target.local, t);
        backend.dispose?.(t);
        loaded.set(name, { device: dev });
      }
    } finally {
      mapped?.close();
      fs.closeSync(fd);
      await st.close();
    }
  }

  // Tied parameters saved once: give the other names the loaded value.
  for (const group of findTiedParameters(backend, model)) {
    const src = group.find((n) => loaded.has(n));
    if (!src) continue;
    for (const n of group) {
      if (loaded.has(n)) continue;
      const where = loaded.get(src)!;
      if (where.device === 'disk') {
        fs.copyFileSync(join(offloadFolder!, `${src}.dat`), join(offloadFolder!, `${n}.dat`));
        index[n] = index[src];
      } else {
        const srcT = targets.get(src)!;
        const cur = modelTensors(backend, srcT.module, { removeDuplicate: false, buffers: false }).find((t) => t.name === srcT.local);
        if (cur) set(targets.get(n)!.module, targets.get(n)!.local, cur.tensor);
      }
      loaded.set(n, where);
    }
  }
  if (Object.keys(index).length > 0) saveOffloadIndex(index, offloadFolder!);

  const missingKeys = [...targets.keys()].filter((n) => !loaded.has(n));
  if (strict && (missingKeys.length > 0 || unexpectedKeys.length > 0)) {
    throw new Error(
      `loadCheckpointInModel (strict): ${missingKeys.length ? `missing keys [${missingKeys.join(', ')}]` : ''}` +
        `${missingKeys.length && unexpectedKeys.length ? '; ' : ''}${unexpectedKeys.length ? `unexpected keys [${unexpectedKeys.join(', ')}]` : ''}. Pass strict: false to load a partial checkpoint.`,
    );
  }
  if (unexpectedKeys.length > 0) {
    process.emitWarning(`Some weights of the checkpoint were not used by the model: ${unexpectedKeys.join(', ')}.`, { code: 'ACCELERATE_UNEXPECTED_KEYS' });
  }
  return { missingKeys, unexpectedKeys, offloaded, files };
}

/** Options of {@link loadCheckpointAndDispatch}. */
export interface LoadCheckpointAndDispatchOptions extends Omit<LoadCheckpointOptions, 'deviceMap'> {
  /**
   * A device map, or how to compute one: `auto`/`balanced` (balance over the
   * GPUs), `balanced_low_0`, `sequential`. Absent: load only, no dispatch.
   */
  deviceMap?: DeviceMap | DeviceMapStrategy;
  /** Budgets when the map is computed. */
  maxMemory?: MaxMemoryInput;
  /** Classes never split (see {@link inferAutoDeviceMap}). */
  noSplitModuleClasses?: readonly string[];
  /** Bytes kept free per device for activations when the map is computed. */
  headroom?: number | string | Record<string, number | string>;
  /** Main device of {@link dispatchModel}. */
  mainDevice?: number | string;
  /** Hooks even on a single device. */
  forceHooks?: boolean;
}

/**
 * Load a checkpoint and dispatch the model (Accelerate's
 * `load_checkpoint_and_dispatch`): compute the device map when a strategy is
 * given, load each tensor where it belongs (disk ones into
 * `offloadFolder`), then attach the hooks that stream offloaded weights.
 */
export async function loadCheckpointAndDispatch<M>(backend: AnyBackend, model: M, checkpoint: string, options: LoadCheckpointAndDispatchOptions = {}): Promise<M> {
  let deviceMap: DeviceMap | undefined;
  if (typeof options.deviceMap === 'string') {
    if (!['auto', 'balanced', 'balanced_low_0', 'sequential'].includes(options.deviceMap)) {
      throw new Error(`If passing a string for deviceMap, please choose 'auto', 'balanced', 'balanced_low_0' or 'sequential' (got ${JSON.stringify(options.deviceMap)}).`);
    }
    deviceMap = inferAutoDeviceMap(backend, model, {
      maxMemory: options.maxMemory,
      noSplitModuleClasses: options.noSplitModuleClasses,
      dtype: options.dtype,
      strategy: options.deviceMap,
      headroom: options.headroom,
    });
  } else deviceMap = options.deviceMap;
  // Fail before reading any shard when the map (or mainDevice) names a device the backend lacks.
  if (deviceMap) checkDeviceMapDevices(backend, deviceMap, 'loadCheckpointAndDispatch', options.mainDevice);
  await loadCheckpointInModel(backend, model, checkpoint, { ...options, deviceMap });
  if (deviceMap === undefined) return model;
  return dispatchModel(backend, model, deviceMap, {
    offloadFolder: options.offloadFolder,
    offloadBuffers: options.offloadBuffers,
    mainDevice: options.mainDevice,
    forceHooks: options.forceHooks,
  });
}
