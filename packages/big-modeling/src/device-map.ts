/**
 * Device maps: which module goes on which device. `inferAutoDeviceMap` fills
 * GPUs in order, then the cpu, then the disk, with Accelerate's rules (tied
 * parameters together, room kept on the main devices for the largest layer,
 * no-split classes kept whole); `explainDeviceMap` says why.
 * @module
 */
import { convertFileSizeToInt } from '@accelerate/core/internal';
import { availableDeviceNames, deviceName, getBalancedMemory, getMaxMemory, isDeviceAvailable, toDevice, type Device, type MaxMemory, type MaxMemoryInput } from './memory.js';
import { computeModuleSizes, computeModuleTotalBufferSize, getMaxLayerSize, rootItems, type TreatItem } from './sizes.js';
import { className, findTiedParameters, modelTensors, namedChildren, namedModules, ownTensors, type AnyBackend } from './tree.js';

/** Module name (dotted, `""` for the whole model) -> device. */
export type DeviceMap = Record<string, Device>;

/** How {@link inferAutoDeviceMap} spreads the model. */
export type DeviceMapStrategy = 'auto' | 'balanced' | 'balanced_low_0' | 'sequential';

/** Options of {@link inferAutoDeviceMap}. */
export interface InferDeviceMapOptions {
  /** Budgets per device (bytes or `"2GiB"`); default: what {@link getMaxMemory} finds. */
  maxMemory?: MaxMemoryInput;
  /** Classes never split over devices (blocks with residual connections). */
  noSplitModuleClasses?: readonly string[];
  /** dtype the weights will be loaded in (sizes are computed for it). */
  dtype?: string;
  /** Per-tensor dtypes. */
  specialDtypes?: Record<string, string>;
  /**
   * Bytes (or a size string) kept free on every bounded device for
   * activations, or one value per device. Default 0 (Accelerate keeps none).
   */
  headroom?: number | string | Record<string, number | string>;
  /**
   * `sequential` (default here, as `infer_auto_device_map`) fills devices in
   * order; `balanced`/`auto` first balances budgets over the GPUs
   * ({@link getBalancedMemory}); `balanced_low_0` keeps GPU 0 as empty as possible.
   */
  strategy?: DeviceMapStrategy;
  /** Group submodules that share a device under their parent (default true). */
  cleanResult?: boolean;
  /** Buffers of offloaded modules are offloaded too (else they count against the main device). */
  offloadBuffers?: boolean;
  /** When nothing fits an empty device, try another module that does (breadth-first). */
  fallbackAllocation?: boolean;
}

/** One step of the algorithm, for {@link explainDeviceMap}. */
export type DeviceMapEvent =
  | { kind: 'budgets'; maxMemory: MaxMemory; mainDevices: Device[]; tied: string[][] }
  | { kind: 'place'; name: string; device: Device; size: number; withTied: string[]; available: number | null; reserved: number }
  | { kind: 'split'; name: string; device: Device; size: number; available: number; tiedModule?: string }
  | { kind: 'no-split'; name: string; device: Device; size: number; available: number; reason: 'leaf' | 'no-split-class' | 'tied' }
  | { kind: 'fallback'; name: string; device: Device }
  | { kind: 'next-device'; from: Device; to: Device };

/** What {@link inferAutoDeviceMapDetailed} returns. */
export interface DeviceMapResult {
  deviceMap: DeviceMap;
  /** Budgets used (after balancing and headroom). */
  maxMemory: MaxMemory;
  /**
   * Bytes counted per device, as Accelerate's `device_memory_used`: the
   * bytes placed plus, on a main device that filled up, the room kept free
   * for the largest layer (see {@link DeviceMapResult.placed} and {@link DeviceMapResult.reserved}).
   */
  used: Record<string, number>;
  /** Bytes of weights placed per device. */
  placed: Record<string, number>;
  /** Bytes kept free per main device for the largest layer, on devices that filled up. */
  reserved: Record<string, number>;
  /** Module sizes (bytes) for the dtype asked. */
  moduleSizes: Record<string, number>;
  events: DeviceMapEvent[];
  /** Warnings (buffers of offloaded modules that fit no GPU). */
  warnings: string[];
}

const isSubOrSelf = (name: string, k: string) => (k + '.').includes(name + '.');

/**
 * The first module (breadth-first, splitting what is too big) whose size with
 * its tied modules fits `limit`, and the work list without it (its parents
 * expanded into their parameters and children). Accelerate's `fallback_allocate`.
 */
function fallbackAllocate<M>(
  backend: AnyBackend,
  items: Array<TreatItem<M>>,
  sizes: Record<string, number>,
  limit: number,
  noSplit: readonly string[],
  tied: string[][],
): { found?: TreatItem<M>; rest: Array<TreatItem<M>> } {
  if (!(limit >= 0)) return { rest: items };
  const expand = (item: TreatItem<M>): Array<TreatItem<M>> => [
    ...ownTensors(backend, item.module).parameters.map(([n]) => ({ name: `${item.name}.${n}` }) as TreatItem<M>),
    ...namedChildren(backend, item.module).map(([n, m]) => ({ name: `${item.name}.${n}`, module: m as M })),
  ];
  let queue = [...items];
  let found: TreatItem<M> | undefined;
  while (queue.length > 0) {
    const item = queue.shift()!;
    const groups = tied.filter((g) => g.some((k) => isSubOrSelf(item.name, k)) && !g.every((k) => isSubOrSelf(item.name, k)));
    let withTies = sizes[item.name] ?? 0;
    for (const p of groups.flatMap((g) => g.filter((k) => !isSubOrSelf(item.name, k)))) {
      const holder = queue.find((i) => p.startsWith(i.name + '.'));
      if (holder) withTies += (sizes[holder.name] ?? 0) - (sizes[p] ?? 0);
    }
    if (withTies <= limit) {
      found = item;
      break;
    }
    if (item.module === undefined) continue;
    if (namedChildren(backend, item.module).length === 0 || noSplit.includes(className(backend, item.module))) continue;
    queue = [...expand(item), ...queue];
  }
  if (!found) return { rest: items };
  // Expand the found module's ancestors in the work list so it can be taken out alone.
  let list = [...items];
  for (let i = 0; i < found.name.length; i++) {
    if (found.name[i] !== '.') continue;
    const idx = list.findIndex((x) => x.name === found!.name.slice(0, i));
    if (idx >= 0) list = [...list.slice(0, idx), ...expand(list[idx]), ...list.slice(idx + 1)];
  }
  const at = list.findIndex((x) => x.name === found!.name);
  return { found: at >= 0 ? list[at] : found, rest: list.filter((_, i) => i !== at) };
}

function resolveHeadroom(headroom: InferDeviceMapOptions['headroom'], device: string): number {
  if (headroom === undefined) return 0;
  if (typeof headroom === 'number' || typeof headroom === 'string') return convertFileSizeToInt(headroom);
  const v = headroom[device];
  return v === undefined ? 0 : convertFileSizeToInt(v);
}

/**
 * {@link inferAutoDeviceMap} with everything it decided: budgets, bytes per
 * device, module sizes and the step-by-step events.
 */
export function inferAutoDeviceMapDetailed(backend: AnyBackend, model: unknown, options: InferDeviceMapOptions = {}): DeviceMapResult {
  const { noSplitModuleClasses = [], dtype, specialDtypes, cleanResult = true, offloadBuffers = false, fallbackAllocation = false } = options;
  const strategy = options.strategy ?? 'sequential';
  if (!['auto', 'balanced', 'balanced_low_0', 'sequential'].includes(strategy)) {
    throw new Error(`strategy ${JSON.stringify(strategy)} is not one of "auto", "balanced", "balanced_low_0", "sequential".`);
  }
  const maxMemory =
    strategy === 'sequential'
      ? getMaxMemory(options.maxMemory, backend)
      : getBalancedMemory(backend, model, options.maxMemory, { noSplitModuleClasses, dtype, specialDtypes, lowZero: strategy === 'balanced_low_0' });
  for (const k of Object.keys(maxMemory)) if (k !== 'disk') maxMemory[k] = Math.max(0, maxMemory[k] - resolveHeadroom(options.headroom, k));

  const devices: Device[] = Object.keys(maxMemory).map(toDevice);
  if (!devices.includes('disk')) devices.push('disk');
  const gpus = devices.filter((d) => d !== 'cpu' && d !== 'disk');
  const mainDevices: Device[] = gpus.includes('mps') ? ['mps'] : gpus.length > 0 ? [gpus[0], 'cpu'] : ['cpu'];
  const sizes = computeModuleSizes(backend, model, { dtype, specialDtypes });
  const size = (n: string) => sizes[n] ?? 0;
  const tiedParameters = findTiedParameters(backend, model);
  let items: Array<TreatItem> = rootItems(backend, model);
  const budget = (d: Device) => maxMemory[String(d)];

  const events: DeviceMapEvent[] = [{ kind: 'budgets', maxMemory: { ...maxMemory }, mainDevices, tied: tiedParameters }];
  const deviceMap = new Map<string, Device>();
  let current = 0;
  const used = new Map<Device, number>(devices.map((d) => [d, 0]));
  const bufferSizes = new Map<Device, number>();
  const reservedOut: Record<string, number> = {};
  const modulesOnly = () => items.filter((i) => i.module !== undefined);
  let maxLayer = getMaxLayerSize(backend, items, sizes, noSplitModuleClasses);
  const childItems = (name: string, m: unknown): TreatItem[] => [
    ...ownTensors(backend, m).parameters.map(([n]) => ({ name: `${name}.${n}` })),
    ...namedChildren(backend, m).map(([n, c]) => ({ name: `${name}.${n}`, module: c })),
  ];

  while (items.length > 0) {
    const item = items.shift()!;
    const { name } = item;
    maxLayer.names = maxLayer.names.filter((n) => n !== name && !n.startsWith(name + '.'));
    if (maxLayer.names.length === 0) maxLayer = getMaxLayerSize(backend, modulesOnly(), sizes, noSplitModuleClasses);
    const moduleSize = size(name);
    const tiedGroups = tiedParameters.filter((g) => g.some((k) => isSubOrSelf(name, k)) && !g.every((k) => isSubOrSelf(name, k)));
    const tiedParams = tiedGroups.flatMap((g) => g.filter((p) => !isSubOrSelf(name, p)));

    const device = devices[current];
    let maxSize: number | null = device === 'disk' ? null : budget(device);
    let reserved = 0;
    if (mainDevices.includes(device) && maxSize !== null) {
      maxSize -= maxLayer.size;
      reserved = maxLayer.size;
    }
    // Size with the modules holding the tied parameters.
    const tiedNames: string[] = [];
    const tiedModules: TreatItem[] = [];
    let sizeWithTies = moduleSize;
    for (const p of tiedParams) {
      const holder = items.find((i) => p.startsWith(i.name + '.'));
      if (!holder) continue;
      tiedNames.push(holder.name);
      tiedModules.push(holder);
      sizeWithTies += size(holder.name) - size(p);
    }
    const usedHere = used.get(device)!;

    if (maxSize === null || usedHere + sizeWithTies <= maxSize) {
      used.set(device, usedHere + sizeWithTies);
      deviceMap.set(name, device);
      for (const t of tiedNames) {
        const idx = items.findIndex((i) => i.name === t);
        if (idx >= 0) items.splice(idx, 1);
        deviceMap.set(t, device);
      }
      events.push({ kind: 'place', name, device, size: sizeWithTies, withTied: tiedNames, available: maxSize === null ? null : maxSize - usedHere, reserved });
      if (!offloadBuffers && item.module !== undefined) {
        bufferSizes.set(device, (bufferSizes.get(device) ?? 0) + computeModuleTotalBufferSize(backend, item.module, { dtype, specialDtypes }));
      }
      continue;
    }

    // The module alone fits: try splitting one of the tied modules instead.
    if (tiedParams.length > 0 && usedHere + moduleSize <= maxSize) {
      let split = false;
      for (let i = 0; i < tiedNames.length; i++) {
        const tm = tiedModules[i];
        if (tm.module === undefined) continue;
        const kids = namedChildren(backend, tm.module);
        if (kids.length === 0 || noSplitModuleClasses.includes(className(backend, tm.module))) continue;
        const idx = items.findIndex((x) => x.name === tiedNames[i]);
        items = [item, ...items.slice(0, idx), ...childItems(tiedNames[i], tm.module), ...items.slice(idx + 1)];
        maxLayer = getMaxLayerSize(backend, modulesOnly(), sizes, noSplitModuleClasses);
        events.push({ kind: 'split', name: tiedNames[i], device, size: sizeWithTies, available: maxSize - usedHere, tiedModule: name });
        split = true;
        break;
      }
      if (split) continue;
      events.push({ kind: 'no-split', name, device, size: sizeWithTies, available: maxSize - usedHere, reason: 'tied' });
    }

    if (usedHere + moduleSize >= maxSize) {
      const kids = item.module !== undefined ? namedChildren(backend, item.module) : [];
      const noSplitClass = item.module !== undefined && kids.length > 0 && noSplitModuleClasses.includes(className(backend, item.module));
      if (kids.length === 0 || noSplitClass) {
        events.push({ kind: 'no-split', name, device, size: moduleSize, available: maxSize - usedHere, reason: noSplitClass ? 'no-split-class' : 'leaf' });
      } else {
        items = [...childItems(name, item.module), ...items];
        maxLayer = getMaxLayerSize(backend, modulesOnly(), sizes, noSplitModuleClasses);
        events.push({ kind: 'split', name, device, size: moduleSize, available: maxSize - usedHere });
        continue;
      }
    }

    if (usedHere === 0 && fallbackAllocation && device !== 'disk') {
      const limit = budget(device) - Math.max(maxLayer.size, sizeWithTies);
      const fb = fallbackAllocate(backend, items, sizes, limit - usedHere, noSplitModuleClasses, tiedParameters);
      if (fb.found) {
        items = [fb.found, item, ...fb.rest];
        events.push({ kind: 'fallback', name: fb.found.name, device });
        continue;
      }
    }

    used.set(device, usedHere + reserved);
    if (reserved > 0) reservedOut[String(device)] = reserved;
    events.push({ kind: 'next-device', from: device, to: devices[current + 1] });
    current += 1;
    items = [item, ...items];
  }

  const warnings: string[] = [];
  const nonGpuBuffers = (bufferSizes.get('cpu') ?? 0) + (bufferSizes.get('disk') ?? 0);
  if (nonGpuBuffers > 0 && !offloadBuffers && gpus.length > 0) {
    const fits = gpus.some((g) => budget(g) >= nonGpuBuffers + (used.get(g) ?? 0));
    if (!fits) {
      warnings.push(
        `the offloaded layers need ${nonGpuBuffers} bytes of buffers, which fit no GPU's remaining memory; pass offloadBuffers: true if you run out of memory.`,
      );
    }
  }
  let map: DeviceMap = Object.fromEntries(deviceMap);
  if (cleanResult) map = cleanDeviceMap(map);
  const usedOut: Record<string, number> = {};
  const placedOut: Record<string, number> = {};
  for (const [d, v] of used) {
    if (v <= 0) continue;
    usedOut[String(d)] = v;
    placedOut[String(d)] = v - (reservedOut[String(d)] ?? 0);
  }
  return { deviceMap: map, maxMemory, used: usedOut, placed: placedOut, reserved: reservedOut, moduleSizes: sizes, events, warnings };
}

/**
 * A device map for `model` that fills the GPUs in order, then the cpu, then
 * the disk (Accelerate's `infer_auto_device_map`):
 * - no device's budget is exceeded;
 * - the main devices (first GPU and cpu, or mps) keep room for the largest
 *   remaining layer, so an offloaded layer can be brought in to run;
 * - tied parameters land on one device;
 * - modules of `noSplitModuleClasses` are never split; other modules are
 *   split into their parameters and children when they do not fit.
 * Works on a model built under {@link initEmptyWeights} (sizes come from shapes and dtypes).
 */
export function inferAutoDeviceMap(backend: AnyBackend, model: unknown, options: InferDeviceMapOptions = {}): DeviceMap {
  const r = inferAutoDeviceMapDetailed(backend, model, options);
  for (const w of r.warnings) process.emitWarning(w, { code: 'ACCELERATE_OFFLOADED_BUFFERS' });
  return r.deviceMap;
}

/**
 * Group entries that share a device under their parent (Accelerate's
 * `clean_device_map`): `{a.x: 0, a.y: 0, b: 1}` -> `{a: 0, b: 1}`; all on
 * one device -> `{"": device}`. Returns a new map.
 */
export function cleanDeviceMap(deviceMap: DeviceMap, moduleName = ''): DeviceMap {
  const map = new Map(Object.entries(deviceMap));
  cleanInPlace(map, moduleName);
  return Object.fromEntries(map);
}

function cleanInPlace(map: Map<string, Device>, moduleName: string): void {
  const prefix = moduleName === '' ? '' : `${moduleName}.`;
  const keys = [...map.keys()].filter((k) => k.startsWith(prefix));
  const values = keys.map((k) => map.get(k)!);
  if (new Set(values).size === 1 && values.length > 1) {
    for (const k of keys) map.delete(k);
    map.set(moduleName, values[0]);
  }
  const depth = moduleName.length > 0 ? moduleName.split('.').length + 1 : 1;
  const children = new Set(
    [...map.keys()].filter((k) => k.startsWith(prefix) && k.length > moduleName.length).map((k) => k.split('.').slice(0, depth).join('.')),
  );
  for (const child of children) cleanInPlace(map, child);
}

/**
 * Check that `deviceMap` gives a device to every tensor of the model's state
 * dict (`""` covers all). Keys naming no submodule produce a warning.
 * @throws Error listing the tensors left without a device.
 */
export function checkDeviceMap(backend: AnyBackend, model: unknown, deviceMap: DeviceMap): void {
  const moduleNames = new Set(namedModules(backend, model).map(([n]) => n));
  const invalid = Object.keys(deviceMap).filter((k) => k !== '' && !moduleNames.has(k) && !isTensorName(backend, model, k));
  if (invalid.length > 0) {
    process.emitWarning(`The following deviceMap keys do not match any submodules in the model: ${invalid.join(', ')}`, { code: 'ACCELERATE_DEVICE_MAP_KEYS' });
  }
  if (Object.prototype.hasOwnProperty.call(deviceMap, '')) return;
  const keys = Object.keys(deviceMap);
  const uncovered = modelTensors(backend, model, { removeDuplicate: false })
    .filter((t) => t.persistent)
    .map((t) => t.name)
    .filter((n) => !keys.some((k) => n === k || n.startsWith(k + '.')));
  if (uncovered.length > 0) {
    throw new Error(
      `The deviceMap provided does not give any device for the following parameters: ${uncovered.join(', ')}. ` +
        'Add their modules (or a parent) to the map, or use "" for the whole model.',
    );
  }
}

/**
 * Check that every device of `deviceMap` exists on `backend` (a GPU index
 * the backend lists, or `cpu`/`disk`), before anything is loaded or moved:
 * a map written for another machine would otherwise fail deep in the
 * backend. `forWhat` names the caller in the message; `mainDevice`, when
 * given, is checked too.
 * @throws Error naming the modules, the missing devices, the devices the backend has and the fix.
 */
export function checkDeviceMapDevices(backend: AnyBackend, deviceMap: DeviceMap, forWhat = 'dispatchModel', mainDevice?: Device): void {
  const bad = Object.entries(deviceMap).filter(([, d]) => !isDeviceAvailable(backend, d));
  const badMain = mainDevice !== undefined && !isDeviceAvailable(backend, mainDevice);
  if (bad.length === 0 && !badMain) return;
  const label = (d: Device) => (typeof d === 'number' ? `GPU ${d} (${deviceName(d)})` : JSON.stringify(d));
  const modName = (k: string) => (k === '' ? '"" (the whole model)' : JSON.stringify(k));
  const parts: string[] = [];
  if (bad.length > 0) {
    const shown = bad.slice(0, 3).map(([k, d]) => `${modName(k)} on ${label(d)}`);
    parts.push(`the device map puts ${shown.join(', ')}${bad.length > 3 ? ` and ${bad.length - 3} more module(s) on such devices` : ''}`);
  }
  if (badMain) parts.push(`mainDevice is ${label(mainDevice)}`);
  throw new Error(
    `${forWhat}: ${parts.join(' and ')}, which the ${backend.name} backend does not have (its devices: ${availableDeviceNames(backend).join(', ') || 'none'}). ` +
      (bad.length > 0
        ? `Map ${bad.length === 1 ? 'that module' : 'those modules'} to a device it has (e.g. "cpu"), or let inferAutoDeviceMap / deviceMap: "auto" plan with the devices that are there.`
        : 'Pass a mainDevice it has (e.g. "cpu").'),
  );
}

function isTensorName(backend: AnyBackend, model: unknown, name: string): boolean {
  return modelTensors(backend, model, { removeDuplicate: false }).some((t) => t.name === name);
}

/** The device of a tensor or module `name`: its longest matching map prefix. */
export function deviceFor(deviceMap: DeviceMap, name: string): Device | undefined {
  let best: string | undefined;
  for (const k of Object.keys(deviceMap)) {
    if (k === '' || name === k || name.startsWith(k + '.')) {
      if (best === undefined || k.length > best.length) best = k;
    }
  }
  return best === undefined ? undefined : deviceMap[best];
}

function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(2)} ${units[i]} (${n} B)`;
}

const devLabel = (d: Device) => (typeof d === 'number' ? `GPU ${d}` : d);

/**
 * Readable text saying which module went where and why: the budgets, the
 * room kept for the largest layer, each placement with the space left, each
 * split and each move to the next device, and a summary per device.
 * Pass the same options as to {@link inferAutoDeviceMap}.
 */
export function explainDeviceMap(backend: AnyBackend, model: unknown, options: InferDeviceMapOptions = {}): string {
  const r = inferAutoDeviceMapDetailed(backend, model, options);
  const lines: string[] = [];
  for (const e of r.events) {
    switch (e.kind) {
      case 'budgets':
      {
        // The disk has no budget in Accelerate: a disk entry of maxMemory is ignored.
        const bounded = Object.entries(e.maxMemory).filter(([d]) => d !== 'disk');
        const list = bounded.length ? bounded.map(([d, b]) => `${devLabel(toDevice(d))} ${fmtBytes(b)}`).join(', ') : 'none';
        lines.push(
          e.maxMemory.disk === undefined
            ? `Budgets: ${list}, disk unbounded.`
            : `Budgets: ${list}; disk unbounded (the disk budget of ${fmtBytes(e.maxMemory.disk)} in maxMemory is ignored, as in Accelerate).`,
        );
      }
        lines.push(`Main devices (keep room for the largest remaining layer): ${e.mainDevices.map(devLabel).join(', ')}.`);
        lines.push(`Model size: ${fmtBytes(r.moduleSizes[''] ?? 0)}.`);
        if (e.tied.length) lines.push(`Tied parameters (kept on one device): ${e.tied.map((g) => g.join(' = ')).join('; ')}.`);
        break;
      case 'place':
        lines.push(
          `- ${e.name || '(model)'} -> ${devLabel(e.device)}: ${fmtBytes(e.size)}` +
            (e.withTied.length ? ` together with ${e.withTied.join(', ')} (tied parameters)` : '') +
            (e.available === null ? ' (disk is unbounded)' : `, ${fmtBytes(e.available)} was free`) +
            (e.reserved ? ` after keeping ${fmtBytes(e.reserved)} for the largest layer` : '') +
            '.',
        );
        break;
      case 'split':
        lines.push(
          e.tiedModule
            ? `- ${e.name} is split so that ${e.tiedModule} and its tied parameters fit on ${devLabel(e.device)} (${fmtBytes(e.available)} free).`
            : `- ${e.name} (${fmtBytes(e.size)}) does not fit on ${devLabel(e.device)} (${fmtBytes(Math.max(0, e.available))} free): split into its parameters and children.`,
        );
        break;
      case 'no-split':
        lines.push(
          `- ${e.name} (${fmtBytes(e.size)}) does not fit on ${devLabel(e.device)} (${fmtBytes(Math.max(0, e.available))} free) and cannot be split (` +
            (e.reason === 'leaf' ? 'it has no submodules' : e.reason === 'no-split-class' ? 'its class is in noSplitModuleClasses' : 'its tied modules cannot be split') +
            ').',
        );
        break;
      case 'fallback':
        lines.push(`- fallback: ${e.name} fits on the empty ${devLabel(e.device)} and is placed first.`);
        break;
      case 'next-device':
        lines.push(`  ${devLabel(e.from)} is full; continuing on ${devLabel(e.to)}.`);
        break;
    }
  }
  lines.push('Result:');
  // Placement order (object keys would put integer-like names first).
  const placed = r.events.flatMap((e) => (e.kind === 'place' ? [e.name, ...e.withTied] : []));
  const firstPlaced = (k: string) => placed.findIndex((n) => k === '' || n === k || n.startsWith(k + '.'));
  const entries = Object.entries(r.deviceMap).sort(([a], [b]) => firstPlaced(a) - firstPlaced(b));
  for (const [name, dev] of entries) lines.push(`  ${name === '' ? '(whole model)' : name}: ${devLabel(dev)}`);
  const perDevice = Object.keys(r.used).map((d) => {
    const kept = r.reserved[d] ?? 0;
    return `${devLabel(toDevice(d))} ${fmtBytes(r.placed[d] ?? 0)} placed` + (kept > 0 ? ` + ${fmtBytes(kept)} kept free for the largest layer` : '');
  });
  lines.push(`Bytes per device: ${perDevice.length ? perDevice.join('; ') : 'none'}.`);
  for (const w of r.warnings) lines.push(`Warning: ${w}`);
  return lines.join('\n') + '\n';
}
