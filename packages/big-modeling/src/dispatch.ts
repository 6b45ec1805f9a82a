/**
 * Putting a model on its devices: `dispatchModel` (a device map, weights on
 * GPUs, cpu or disk, hooks streaming offloaded weights in), `cpuOffload`,
 * `diskOffload`, `cpuOffloadWithHook`, and empty-weight initialisation.
 * @module
 */
import * as fs from 'node:fs';
import { requireCapability } from '@accelerate/core';
import { parseFlagFromEnv } from '@accelerate/core/internal';
import { join } from 'node:path';
import { checkDeviceMap, checkDeviceMapDevices, deviceFor, type DeviceMap } from './device-map.js';
import { AlignDevicesHook, addHookToModule, tensorsToOffload, UserCpuOffloadHook, type HookedTensor, type ModelHook } from './hooks.js';
import { deviceName, type Device } from './memory.js';
import { OffloadedWeightsLoader, offloadStateDict, readOffloadIndex, type OffloadIndex } from './offload.js';
import { modelTensors, namedModules, need, ownTensors, type AnyBackend } from './tree.js';

/** Options of {@link dispatchModel}. */
export interface DispatchOptions {
  /** Device the offloaded parts run on; default the first GPU of the map, else `cpu`. */
  mainDevice?: Device;
  /** Folder for disk-offloaded weights: written (index.json + .dat files) when it has no index.json yet. */
  offloadFolder?: string;
  /** Index of weights already in `offloadFolder` (default: its index.json). */
  offloadIndex?: OffloadIndex;
  /** Offload buffers too (default: buffers of offloaded modules stay on the execution device). */
  offloadBuffers?: boolean;
  /** cpu-offloaded weights, when they are not in the model (default: taken from the model). */
  stateDict?: Record<string, unknown>;
  /** Add hooks even when the whole model goes to one device. */
  forceHooks?: boolean;
}

const deviceMaps = new WeakMap<object, DeviceMap>();

/** The device map a model was dispatched with (Accelerate's `model.hf_device_map`). */
export function getDeviceMap(model: unknown): DeviceMap | undefined {
  return deviceMaps.get(model as object);
}

function setDeviceMap(model: unknown, map: DeviceMap): void {
  deviceMaps.set(model as object, { ...map });
  try {
    Object.defineProperty(model, 'hfDeviceMap', { value: { ...map }, configurable: true, enumerable: false, writable: true });
  } catch {
    // Frozen models only get the WeakMap entry.
  }
}

/**
 * Put each part of `model` where `deviceMap` says (Accelerate's
 * `dispatch_model`). GPU entries are moved there; with a GPU main device,
 * cpu entries stay in memory and are streamed to it per forward; `disk`
 * entries are written to `offloadFolder` (unless it already holds them) and
 * read back just before their module's forward. Offloaded tensors are
 * `meta` placeholders between forwards, so they take no memory. The model's
 * output comes back on the device of its input.
 * @throws Error when the map leaves tensors without a device, names a device the backend does not have, or disk is used without a folder.
 */
export function dispatchModel<M>(backend: AnyBackend, model: M, deviceMap: DeviceMap, options: DispatchOptions = {}): M {
  checkDeviceMapDevices(backend, deviceMap, 'dispatchModel', options.mainDevice);
  checkDeviceMap(backend, model, deviceMap);
  const values = Object.values(deviceMap);
  const mainDevice: Device = options.mainDevice ?? values.find((d) => d !== 'cpu' && d !== 'disk') ?? 'cpu';
  const single = new Set(values).size === 1;
  if (single && values[0] !== 'disk' && !options.forceHooks) {
    requireCapability(backend, 'models', 'dispatchModel').moveModel(model, deviceName(values[0]));
    setDeviceMap(model, deviceMap);
    return model;
  }
  const offloadedDevices: Device[] = mainDevice === 'cpu' || mainDevice === 'mps' ? ['disk'] : ['cpu', 'disk'];
  const execFor = (d: Device | undefined): Device => (d === undefined || d === 'cpu' || d === 'disk' ? mainDevice : d);

  const all = modelTensors<unknown, unknown>(backend, model, { removeDuplicate: false });
  const devOf = new Map(all.map((t) => [t.name, deviceFor(deviceMap, t.name)]));
  const isOffloaded = (t: (typeof all)[number]) => offloadedDevices.includes(devOf.get(t.name)!) && (t.kind === 'parameter' || (options.offloadBuffers === true && t.persistent));

  // Weights kept in memory for cpu offload: detached handles, so hooks may free the module's own.
  const sd = requireCapability(backend, 'models', 'dispatchModel').stateDict(model) as Record<string, unknown>;
  const cpuWeights = new Map<string, unknown>();
  for (const t of all) {
    if (!isOffloaded(t) || devOf.get(t.name) !== 'cpu') continue;
    const v = options.stateDict?.[t.name] ?? sd[t.name] ?? t.tensor;
    cpuWeights.set(t.name, backend.device(v) === 'cpu' ? v : backend.toDevice(v, 'cpu'));
  }
  const diskTensors = all.filter((t) => isOffloaded(t) && devOf.get(t.name) === 'disk');
  let index = options.offloadIndex;
  if (diskTensors.length > 0) {
    if (options.offloadFolder === undefined && index === undefined) {
      throw new Error(
        `dispatchModel: the device map offloads ${diskTensors.length} tensor(s) to "disk" (e.g. ${diskTensors[0].name}); pass offloadFolder (a folder to write them to) or offloadIndex.`,
      );
    }
    if (index === undefined) {
      index = readOffloadIndex(options.offloadFolder!);
      if (index === undefined || diskTensors.some((t) => !(t.name in index!))) {
        const missing = new Map<string, unknown>();
        for (const t of diskTensors) if (!index || !(t.name in index)) missing.set(t.name, sd[t.name] ?? t.tensor);
        index = { ...(index ?? {}), ...offloadStateDict(backend, options.offloadFolder!, missing) };
      }
    }
  }
  const weightsMap = new OffloadedWeightsLoader(backend, { stateDict: cpuWeights, saveFolder: options.offloadFolder, index: index ?? {} });

  // Non-offloaded tensors go to their device; buffers of offloaded modules to the execution device.
  for (const [mn, m] of namedModules(backend, model)) {
    const own = ownTensors(backend, m);
    const placed = [
      ...own.parameters.map(([n, t]) => ({ n, t, kind: 'parameter' as const, persistent: true })),
      ...own.buffers.map((b) => ({ n: b.name, t: b.tensor, kind: 'buffer' as const, persistent: b.persistent })),
    ];
    for (const p of placed) {
      const full = mn ? `${mn}.${p.n}` : p.n;
      const d = devOf.get(full) ?? deviceFor(deviceMap, full);
      if (d !== undefined && offloadedDevices.includes(d) && (p.kind === 'parameter' || (options.offloadBuffers === true && p.persistent))) continue;
      const target = deviceName(d !== undefined && d !== 'cpu' && d !== 'disk' ? d : d === 'cpu' && !offloadedDevices.includes('cpu') ? 'cpu' : mainDevice);
      if (backend.device(p.t) !== target) {
        const moved = backend.toDevice(p.t, target);
        need(backend, 'setModuleTensor', 'dispatchModel')(m, p.n, moved);
      }
    }
  }

  // Hooks: every module with offloaded tensors of its own, every module named in the map (inputs), and the root.
  const keys = new Set(Object.keys(deviceMap));
  const gpuInvolved = values.some((d) => typeof d === 'number' || (d !== 'cpu' && d !== 'disk')) || (mainDevice !== 'cpu' && mainDevice !== 'disk');
  for (const [mn, m] of namedModules(backend, model)) {
    const offloaded: HookedTensor[] = tensorsToOffload(backend, m, mn, { buffers: options.offloadBuffers }).filter((t) => {
      const d = devOf.get(t.key);
      return d !== undefined && offloadedDevices.includes(d);
    });
    const isRoot = mn === '';
    if (offloaded.length === 0 && !isRoot && !(keys.has(mn) && gpuInvolved)) continue;
    const exec = deviceName(execFor(deviceFor(deviceMap, mn)));
    const hook = new AlignDevicesHook(backend, {
      executionDevice: gpuInvolved || offloaded.length > 0 ? exec : undefined,
      offloaded,
      weightsMap,
      ioSameDevice: isRoot,
    });
    addHookToModule(backend, m, hook as ModelHook);
  }
  setDeviceMap(model, deviceMap);
  return model;
}

/** Options of {@link cpuOffload}. */
export interface CpuOffloadOptions {
  /** Device the model runs on (default `cuda:0` when the backend has a GPU, else `cpu`). */
  executionDevice?: string;
  /** Offload buffers too. */
  offloadBuffers?: boolean;
  /** The weights to use (default: the model's). */
  stateDict?: Record<string, unknown>;
}

function defaultExecutionDevice(backend: AnyBackend): string {
  return backend.devices().find((d) => d.kind !== 'cpu')?.name ?? 'cpu';
}

function attachOffload<M>(backend: AnyBackend, model: M, weightsMap: OffloadedWeightsLoader, executionDevice: string, offloadBuffers: boolean): M {
  for (const [mn, m] of namedModules(backend, model)) {
    const offloaded = tensorsToOffload(backend, m, mn, { buffers: offloadBuffers });
    if (!offloadBuffers) {
      for (const b of ownTensors(backend, m).buffers) {
        if (backend.device(b.tensor) !== executionDevice) need(backend, 'setModuleTensor', 'offloading')(m, b.name, backend.toDevice(b.tensor, executionDevice));
      }
    }
    if (offloaded.length === 0 && mn !== '') continue;
    addHookToModule(backend, m, new AlignDevicesHook(backend, { executionDevice, offloaded, weightsMap, ioSameDevice: mn === '' }) as ModelHook);
  }
  return model;
}

/**
 * Keep the weights in cpu memory and bring each module's weights to
 * `executionDevice` only for its forward (Accelerate's `cpu_offload`).
 */
export function cpuOffload<M>(backend: AnyBackend, model: M, options: CpuOffloadOptions = {}): M {
  const exec = options.executionDevice ?? defaultExecutionDevice(backend);
  const sd = options.stateDict ?? (requireCapability(backend, 'models', 'cpuOffload').stateDict(model) as Record<string, unknown>);
  const weights = new Map<string, unknown>();
  for (const [k, v] of Object.entries(sd)) weights.set(k, backend.device(v) === 'cpu' ? v : backend.toDevice(v, 'cpu'));
  attachOffload(backend, model, new OffloadedWeightsLoader(backend, { stateDict: weights }), exec, options.offloadBuffers ?? false);
  setDeviceMap(model, { '': 'cpu' });
  return model;
}

/**
 * Keep the weights on disk in `offloadFolder` (written when it has no
 * index.json) and read each module's weights just for its forward
 * (Accelerate's `disk_offload`).
 */
export function diskOffload<M>(backend: AnyBackend, model: M, offloadFolder: string, options: Omit<CpuOffloadOptions, 'stateDict'> = {}): M {
  const exec = options.executionDevice ?? defaultExecutionDevice(backend);
  if (!fs.existsSync(join(offloadFolder, 'index.json'))) {
    offloadStateDict(backend, offloadFolder, requireCapability(backend, 'models', 'diskOffload').stateDict(model) as Record<string, unknown>);
  }
  attachOffload(backend, model, new OffloadedWeightsLoader(backend, { saveFolder: offloadFolder }), exec, options.offloadBuffers ?? false);
  setDeviceMap(model, { '': 'disk' });
  return model;
}

/**
 * Move the whole model to `executionDevice` at its first forward and keep it
 * there until the returned hook's `offload()` (Accelerate's
 * `cpu_offload_with_hook`): for pipelines that run models one after another,
 * `prevModuleHook` is offloaded just before this model runs.
 */
export function cpuOffloadWithHook<M>(
  backend: AnyBackend,
  model: M,
  options: { executionDevice?: string; prevModuleHook?: UserCpuOffloadHook<unknown> } = {},
): { model: M; hook: UserCpuOffloadHook<M> } {
  const exec = options.executionDevice ?? defaultExecutionDevice(backend);
  const prev = options.prevModuleHook;
  const models = requireCapability(backend, 'models', 'cpuOffloadWithHook');
  const inner: ModelHook<M> = {
    initHook: (m) => {
      models.moveModel(m, 'cpu');
      return m;
    },
    preForward: (m, args) => {
      prev?.offload();
      models.moveModel(m, exec);
      return args.map((a) => (backend.isTensor(a) ? backend.toDevice(a, exec) : a));
    },
  };
  const m = addHookToModule(backend, model, inner);
  return { model: m, hook: new UserCpuOffloadHook(backend, m, inner) };
}

/**
 * Run `fn` with parameters created on `device` (Accelerate's `init_on_device`).
 */
export function initOnDevice<R>(backend: AnyBackend, device: string, fn: () => R, options: { includeBuffers?: boolean } = {}): R {
  return need(backend, 'initOnDevice', 'initOnDevice')(device, fn, options) as R;
}

/**
 * Run `fn` (which builds a model) with every parameter created on the
 * `meta` device: shapes and dtypes only, no memory, so a model of any size
 * can be built and planned with {@link inferAutoDeviceMap}, then filled by
 * {@link loadCheckpointInModel}. Buffers stay real unless `includeBuffers`
 * (default: env `ACCELERATE_INIT_INCLUDE_BUFFERS`).
 */
export function initEmptyWeights<R>(backend: AnyBackend, fn: () => R, options: { includeBuffers?: boolean } = {}): R {
  const includeBuffers = options.includeBuffers ?? parseFlagFromEnv('ACCELERATE_INIT_INCLUDE_BUFFERS', false);
  return initOnDevice(backend, 'meta', fn, { includeBuffers });
}
