/**
 * `PartialState`: who this process is (rank, world, device, distributed type)
 * and its process group. One per process, as in Accelerate, because the world
 * is a fact about the process; unlike Accelerate, asking for it twice with
 * compatible options simply returns it, and asking with incompatible ones
 * gives an error that says which value conflicts and how to proceed.
 * @module
 */
import { PROCESS_GROUP_TIMEOUT_ENV, parseTimeoutSeconds } from '../config/timeout.js';
import type { Backend, DeviceInfo } from '../interfaces/backend.js';
import type { ProcessGroup } from '../interfaces/process-group.js';
import { DistributedType, multiTypeForDeviceKind } from './distributed-type.js';
import { detectWorld, type WorldInfo } from './environment.js';
import { setRankInfoProvider } from '../utils/logging.js';

/** Options for {@link PartialState.init}. */
export interface PartialStateOptions {
  /** Force the CPU even when an accelerator device exists (`--cpu`, `ACCELERATE_USE_CPU`). */
  cpu?: boolean;
  /** The compute backend; decides devices and provides the process group. */
  backend: Backend<any, any, any, any>;
  /** Environment to read (defaults to `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * Collective timeout in ms (InitProcessGroupKwargs.timeout); default: `ACCELERATE_PROCESS_GROUP_TIMEOUT`
   * (seconds, set by `accelerate launch --timeout`) when set, else 1 800 000 (30 min) as Accelerate's gloo default.
   */
  timeoutMs?: number;
  /** Transport for the process group (`gloo`, `nccl`, `mpi`); default: the backend's choice. */
  processGroupBackend?: string;
  /** Cross-rank shape checks on collectives (`ACCELERATE_DEBUG_MODE`). */
  debug?: boolean;
}

let current: PartialState | undefined;
let pending: Promise<PartialState> | undefined;
let generation = 0;

/** Raised when an object outlives a {@link PartialState.reset} and is used again. */
export class StaleStateError extends Error {
  override name = 'StaleStateError';
}

/** The process's distributed identity. Create it with {@link PartialState.init}. */
export class PartialState {
  /** The world as read from the environment. */
  readonly world: WorldInfo;
  readonly distributedType: DistributedType;
  /** Device this process computes on, e.g. `cpu` or `cuda:1`. */
  readonly device: string;
  readonly backend: Backend<any, any, any, any>;
  /** Present when more than one process takes part. */
  readonly group: ProcessGroup<any> | undefined;
  readonly debug: boolean;
  readonly cpu: boolean;
  /** Incremented by every reset; objects remember theirs to detect staleness. */
  readonly generation: number;

  private constructor(init: {
    world: WorldInfo;
    distributedType: DistributedType;
    device: string;
    backend: Backend<any, any, any, any>;
    group: ProcessGroup<any> | undefined;
    debug: boolean;
    cpu: boolean;
  }) {
    this.world = init.world;
    this.distributedType = init.distributedType;
    this.device = init.device;
    this.backend = init.backend;
    this.group = init.group;
    this.debug = init.debug;
    this.cpu = init.cpu;
    this.generation = generation;
  }

  /**
   * Detect the world, choose the device and, when more than one process runs,
   * join the process group (a rendezvous: resolves once every rank arrived).
   * Calling it again returns the same state; conflicting options throw.
   */
  static async init(options: PartialStateOptions): Promise<PartialState> {
    if (current) {
      current.checkCompatible(options);
      return current;
    }
    if (pending) {
      const s = await pending;
      s.checkCompatible(options);
      return s;
    }
    pending = PartialState.create(options);
    try {
      const s = await pending;
      current = s;
      setRankInfoProvider(() =>
        current === s
          ? { processIndex: s.processIndex, localProcessIndex: s.localProcessIndex, numProcesses: s.numProcesses, isMainProcess: s.isMainProcess, waitForEveryone: () => s.waitForEveryone() }
          : undefined,
      );
      return s;
    } finally {
      pending = undefined;
    }
  }

  /** The initialised state, or undefined before {@link PartialState.init}. */
  static get current(): PartialState | undefined {
    return current;
  }

  /** True once {@link PartialState.init} completed. */
  static get initialized(): boolean {
    return current !== undefined;
  }

  /**
   * Forget the state (and destroy its process group). Objects created before
   * the reset raise {@link StaleStateError} when used.
   */
  static async reset(): Promise<void> {
    const s = current;
    current = undefined;
    generation += 1;
    if (s?.group) await s.group.destroy();
  }

  /** Current generation, bumped by each reset. */
  static get generation(): number {
    return generation;
  }

  private static async create(options: PartialStateOptions): Promise<PartialState> {
    const env = options.env ?? process.env;
    const world = detectWorld(env);
    const backend = options.backend;
    const cpu = options.cpu ?? false;
    const accelerators = backend.devices().filter((d: DeviceInfo) => d.kind !== 'cpu');
    const kind = cpu || accelerators.length === 0 ? 'cpu' : accelerators[0].kind;
    let device = 'cpu';
    if (kind !== 'cpu') {
      const sameKind = accelerators.filter((d) => d.kind === kind);
      device = sameKind[world.localRank % sameKind.length].name;
    }
    const distributedType = world.worldSize > 1 ? multiTypeForDeviceKind(kind) : DistributedType.NO;
    let group: ProcessGroup<any> | undefined;
    if (world.worldSize > 1) {
      if (!backend.communication) {
        throw new Error(
          `This run has ${world.worldSize} processes but the "${backend.name}" backend cannot communicate between processes. Install @accelerate/backend-libtorch (it provides gloo/NCCL process groups) or run a single process.`,
        );
      }
      group = await backend.communication.initProcessGroup({
        rank: world.rank,
        worldSize: world.worldSize,
        masterAddr: world.masterAddr ?? '127.0.0.1',
        masterPort: world.masterPort,
        backend: options.processGroupBackend,
        timeoutMs: options.timeoutMs ?? timeoutFromEnv(env) ?? 1_800_000,
      });
    }
    return new PartialState({ world, distributedType, device, backend, group, debug: options.debug ?? false, cpu });
  }

  private checkCompatible(options: PartialStateOptions): void {
    if (options.backend !== this.backend && options.backend.name !== this.backend.name) {
      throw new Error(
        `PartialState already runs on the "${this.backend.name}" backend; a second Accelerator asked for "${options.backend.name}". One process uses one compute backend: pass the same backend, or call \`await PartialState.reset()\` first.`,
      );
    }
    if ((options.cpu ?? false) && !this.cpu && this.device !== 'cpu') {
      throw new Error(
        `PartialState already placed this process on ${this.device}; a second Accelerator asked for cpu=true. Create the first Accelerator with { cpu: true } as well, or call \`await PartialState.reset()\` first.`,
      );
    }
  }

  /** Throw {@link StaleStateError} if a reset happened after `gen`. */
  static assertFresh(gen: number, what: string): void {
    if (gen !== generation) {
      throw new StaleStateError(
        `${what} belongs to a state that was reset (\`AcceleratorState\` object has no attribute for it any more). This happens if \`AcceleratorState._reset_state()\` / \`PartialState.reset()\` was called: create a new Accelerator after a reset.`,
      );
    }
  }

  get numProcesses(): number {
    return this.world.worldSize;
  }
  get processIndex(): number {
    return this.world.rank;
  }
  get localProcessIndex(): number {
    return this.world.localRank;
  }
  get numMachines(): number {
    return this.world.numMachines;
  }
  /** True on global rank 0. */
  get isMainProcess(): boolean {
    return this.processIndex === 0;
  }
  /** True on each machine's local rank 0. */
  get isLocalMainProcess(): boolean {
    return this.localProcessIndex === 0;
  }
  get isLastProcess(): boolean {
    return this.processIndex === this.numProcesses - 1;
  }
  /** More than one process takes part. */
  get useDistributed(): boolean {
    return this.distributedType !== DistributedType.NO && this.numProcesses > 1;
  }

  /** Barrier across every process (no-op in a single process). */
  async waitForEveryone(): Promise<void> {
    if (this.group) await this.group.barrier().wait();
  }
}

/** `ACCELERATE_PROCESS_GROUP_TIMEOUT` (seconds) in ms; undefined when unset; an error naming it when malformed. */
function timeoutFromEnv(env: Readonly<Record<string, string | undefined>>): number | undefined {
  const raw = env[PROCESS_GROUP_TIMEOUT_ENV];
  if (raw === undefined || raw === '') return undefined;
  const seconds = parseTimeoutSeconds(raw);
  if (seconds === undefined) {
    throw new Error(`${PROCESS_GROUP_TIMEOUT_ENV}=${JSON.stringify(raw)} is not a positive number of seconds. Set it to e.g. 600 (10 minutes), or unset it for the default (1800).`);
  }
  return seconds * 1000;
}
