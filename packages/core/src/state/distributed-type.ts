/**
 * Kinds of distributed run, with Accelerate's names so config files and
 * environment variables carry over unchanged.
 */
export const DistributedType = {
  NO: 'NO',
  MULTI_CPU: 'MULTI_CPU',
  MULTI_GPU: 'MULTI_GPU',
  MULTI_NPU: 'MULTI_NPU',
  MULTI_MLU: 'MULTI_MLU',
  MULTI_SDAA: 'MULTI_SDAA',
  MULTI_MUSA: 'MULTI_MUSA',
  MULTI_XPU: 'MULTI_XPU',
  MULTI_HPU: 'MULTI_HPU',
  MULTI_NEURON: 'MULTI_NEURON',
  DEEPSPEED: 'DEEPSPEED',
  FSDP: 'FSDP',
  XLA: 'XLA',
  MEGATRON_LM: 'MEGATRON_LM',
} as const;

/** One of {@link DistributedType}'s values. */
export type DistributedType = (typeof DistributedType)[keyof typeof DistributedType];

/** The MULTI_* type for a device kind (`cuda` -> MULTI_GPU, `cpu` -> MULTI_CPU, …). */
export function multiTypeForDeviceKind(kind: string): DistributedType {
  switch (kind) {
    case 'cpu':
      return DistributedType.MULTI_CPU;
    case 'cuda':
      return DistributedType.MULTI_GPU;
    case 'npu':
      return DistributedType.MULTI_NPU;
    case 'mlu':
      return DistributedType.MULTI_MLU;
    case 'sdaa':
      return DistributedType.MULTI_SDAA;
    case 'musa':
      return DistributedType.MULTI_MUSA;
    case 'xpu':
      return DistributedType.MULTI_XPU;
    case 'hpu':
      return DistributedType.MULTI_HPU;
    case 'neuron':
      return DistributedType.MULTI_NEURON;
    default:
      return DistributedType.MULTI_CPU;
  }
}
