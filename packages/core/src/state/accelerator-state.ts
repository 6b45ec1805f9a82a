/**
 * `AcceleratorState`: the process's {@link PartialState} plus what one
 * Accelerator adds (precision, resolved configuration, plugins). Unlike
 * Accelerate's singleton it belongs to its Accelerator, so two Accelerators in
 * one process may differ in precision or accumulation without an
 * "already initialized" error; what must be shared (the world, the device,
 * the process group) comes from the one PartialState.
 * @module
 */
import type { MixedPrecision } from '../interfaces/backend.js';
import type { ResolvedConfig } from '../config/resolve.js';
import { DistributedType } from './distributed-type.js';
import { GradientState } from './gradient-state.js';
import { PartialState } from './partial-state.js';

/** State of one Accelerator. */
export class AcceleratorState {
  constructor(
    /** The process's distributed identity. */
    readonly partial: PartialState,
    /** The resolved configuration with provenance. */
    readonly config: ResolvedConfig,
    /** Names of the active plugins, in run order. */
    readonly pluginNames: readonly string[] = [],
  ) {}

  /**
   * Reset every shared state (world, process group, gradient state). Objects
   * created before raise a {@link StaleStateError} that says why.
   * Accelerate calls this `AcceleratorState._reset_state()`.
   */
  static async resetState(): Promise<void> {
    GradientState.reset();
    await PartialState.reset();
  }

  get mixedPrecision(): MixedPrecision {
    return this.config.value('mixedPrecision');
  }
  /** Distributed type, upgraded to FSDP / DEEPSPEED / MEGATRON_LM when those are requested on a multi-process run. */
  get distributedType(): DistributedType {
    const base = this.partial.distributedType;
    if (base === DistributedType.NO) return base;
    if (this.config.value('useDeepspeed')) return DistributedType.DEEPSPEED;
    if (this.config.value('useFsdp')) return DistributedType.FSDP;
    if (this.config.value('useMegatronLm')) return DistributedType.MEGATRON_LM;
    return base;
  }
  get numProcesses(): number {
    return this.partial.numProcesses;
  }
  get processIndex(): number {
    return this.partial.processIndex;
  }
  get localProcessIndex(): number {
    return this.partial.localProcessIndex;
  }
  get device(): string {
    return this.partial.device;
  }
  /** True on rank 0 (on the last rank under Megatron-LM, as in Accelerate). */
  get isMainProcess(): boolean {
    return this.distributedType === DistributedType.MEGATRON_LM ? this.partial.isLastProcess : this.partial.isMainProcess;
  }

  /**
   * Every setting with its value and source, then the process's identity:
   * the answer to "why is my run configured like this?".
   */
  report(): string {
    const s = this.partial;
    const from = s.world.source === 'single' ? 'a single process' : `${s.world.source} variables (${Object.keys(s.world.readFrom).join(', ')})`;
    return [
      this.config.report(),
      '',
      `distributed_type: ${this.distributedType}`,
      `num_processes: ${s.numProcesses} (from ${from})`,
      `process_index: ${s.processIndex}`,
      `local_process_index: ${s.localProcessIndex}`,
      `num_machines: ${s.numMachines}`,
      `device: ${s.device}`,
      `backend: ${s.backend.name} ${s.backend.version}`,
      `plugins: ${this.pluginNames.length ? this.pluginNames.join(', ') : 'none'}`,
    ].join('\n');
  }
}
