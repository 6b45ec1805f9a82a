/**
 * The flags of `accelerate launch`, as one table: Python Accelerate's names
 * (snake_case), their types, defaults and help, and how accelerate-ts treats
 * each one. The CLI builds its options from this table and the launcher
 * merges flags with the config file by these names, so both always agree.
 * @module
 */
import { parseBoolEnv } from '../config/env.js';
import { suggestClosest } from '../config/errors.js';

/** A flag's value once parsed. */
export type LaunchValue = string | number | boolean | readonly string[];

/**
 * How a flag's text is read:
 * `boolean` is a switch (`--cpu`); `boolish` takes `true`/`false`/`yes`/`no`…
 * (`--fsdp_offload_params true`); `list` may be repeated.
 */
export type LaunchFlagType = 'boolean' | 'boolish' | 'integer' | 'number' | 'string' | 'list';

/** Help groups, as Python's `accelerate launch --help` shows them. */
export type LaunchFlagGroup =
  | 'general'
  | 'hardware'
  | 'resources'
  | 'paradigm'
  | 'distributed'
  | 'tpu'
  | 'deepspeed'
  | 'fsdp'
  | 'megatron_lm'
  | 'fp8'
  | 'aws'
  | 'mpirun'
  | 'parallelism';

/**
 * What accelerate-ts does with a flag:
 * - `native`: the launcher acts on it (process count, rendezvous, output, …);
 * - `env`: exported to the ranks as Accelerate's environment variables
 *   (§10's table) for the plugins that read them (FSDP, DeepSpeed,
 *   Megatron-LM, FP8, parallelism, dynamo), exactly as Python exports them;
 * - `unsupported`: refused with an error that says so (TPU, SageMaker, mpirun).
 */
export type LaunchFlagSupport = 'native' | 'env' | 'unsupported';

/** One flag of `accelerate launch`. */
export interface LaunchFlagSpec {
  /** Python's name without dashes: `num_processes` (the CLI also accepts `--num-processes`). */
  readonly name: string;
  readonly type: LaunchFlagType;
  readonly group: LaunchFlagGroup;
  readonly help: string;
  /** One-letter alias (`-q`, `-m`, `-t`). */
  readonly short?: string;
  /** Allowed values (compared case-insensitively, stored as listed here). */
  readonly choices?: readonly string[];
  /** Value when neither a flag nor the config file gives one (Python's argparse default). */
  readonly default?: LaunchValue;
  readonly support: LaunchFlagSupport;
  /** Placeholder in help (`<n>`). */
  readonly valueName?: string;
}

const DYNAMO_BACKEND_CHOICES = [
  'no',
  'eager',
  'aot_eager',
  'inductor',
  'aot_ts_nvfuser',
  'nvprims_nvfuser',
  'cudagraphs',
  'ofi',
  'fx2trt',
  'onnxrt',
  'tensorrt',
  'aot_torchxla_trace_once',
  'torhchxla_trace_once',
  'ipex',
  'tvm',
  'hpu_backend',
];

const f = (
  name: string,
  type: LaunchFlagType,
  group: LaunchFlagGroup,
  support: LaunchFlagSupport,
  help: string,
  extra: Partial<Pick<LaunchFlagSpec, 'short' | 'choices' | 'default' | 'valueName'>> = {},
): LaunchFlagSpec => ({ name, type, group, support, help, ...extra });

const UNSUPPORTED_TPU = 'TPU launching is not supported by accelerate-ts.';

/** Every flag of `accelerate launch`, in Python's help order. */
export const LAUNCH_FLAGS: readonly LaunchFlagSpec[] = [
  // general
  f('config_file', 'string', 'general', 'native', 'Config file to read defaults from (default: $HF_HOME/accelerate/default_config.yaml when it exists).', { valueName: 'path' }),
  f('quiet', 'boolean', 'general', 'native', "Print each rank's output as is, without the `[rank N]` prefix, and a shorter failure summary.", { short: 'q' }),
  f('module', 'boolean', 'general', 'native', 'Treat the script as a module name resolved from the working directory (like `python -m`).', { short: 'm' }),
  f('no_python', 'boolean', 'general', 'native', 'Run the script as an executable, without node.'),
  f('debug', 'boolean', 'general', 'native', 'Check collectives across ranks for shape mismatches (ACCELERATE_DEBUG_MODE).'),
  // hardware
  f('cpu', 'boolean', 'hardware', 'native', 'Train on the CPU even when an accelerator exists (ACCELERATE_USE_CPU).'),
  f('multi_gpu', 'boolean', 'hardware', 'native', 'Distributed training on several GPUs (needs at least 2 processes).'),
  f('tpu', 'boolean', 'hardware', 'unsupported', UNSUPPORTED_TPU),
  // resources
  f('mixed_precision', 'string', 'resources', 'native', 'Mixed precision: no, fp16, bf16 or fp8.', { choices: ['no', 'fp16', 'bf16', 'fp8'], valueName: 'mode' }),
  f('num_processes', 'integer', 'resources', 'native', 'Total number of processes, over all machines.', { valueName: 'n' }),
  f('num_machines', 'integer', 'resources', 'native', 'Number of machines taking part.', { valueName: 'n' }),
  f('num_cpu_threads_per_process', 'integer', 'resources', 'native', 'CPU threads per process (OMP_NUM_THREADS); default: the cores divided among the local processes.', { valueName: 'n' }),
  f('enable_cpu_affinity', 'boolean', 'resources', 'env', 'Pin each process to the cores of its NUMA node (ACCELERATE_CPU_AFFINITY).'),
  f('dynamo_backend', 'string', 'resources', 'env', 'torch.compile backend (ACCELERATE_DYNAMO_BACKEND); no = off.', { choices: DYNAMO_BACKEND_CHOICES, valueName: 'name' }),
  f('dynamo_mode', 'string', 'resources', 'env', 'torch.compile mode.', { choices: ['default', 'reduce-overhead', 'max-autotune'], default: 'default', valueName: 'mode' }),
  f('dynamo_use_fullgraph', 'boolean', 'resources', 'env', 'Compile the whole model as one graph.'),
  f('dynamo_use_dynamic', 'boolean', 'resources', 'env', 'Dynamic shape tracing.'),
  f('dynamo_use_regional_compilation', 'boolean', 'resources', 'env', 'Compile repeated blocks once.'),
  // training paradigm
  f('use_deepspeed', 'boolean', 'paradigm', 'env', 'Use DeepSpeed (exports ACCELERATE_USE_DEEPSPEED and the DeepSpeed settings).'),
  f('use_fsdp', 'boolean', 'paradigm', 'env', 'Use FSDP (exports ACCELERATE_USE_FSDP and FSDP_*).'),
  f('use_parallelism_config', 'boolean', 'paradigm', 'env', 'Use the N-D parallelism config (needs --use_fsdp --fsdp_version 2).'),
  f('use_megatron_lm', 'boolean', 'paradigm', 'env', 'Use Megatron-LM (exports ACCELERATE_USE_MEGATRON_LM and MEGATRON_LM_*).'),
  // distributed
  f('gpu_ids', 'string', 'distributed', 'native', 'Comma-separated device ids this machine uses, or `all` (sets CUDA_VISIBLE_DEVICES).', { valueName: 'ids' }),
  f('same_network', 'boolean', 'distributed', 'native', 'All machines share one network (accelerate-ts always rendezvous at main_process_ip:main_process_port).'),
  f('machine_rank', 'integer', 'distributed', 'native', 'Rank of this machine, 0 .. num_machines-1.', { valueName: 'rank' }),
  f('timeout', 'number', 'distributed', 'native', 'Seconds a collective or the rendezvous may wait before failing (ACCELERATE_PROCESS_GROUP_TIMEOUT); default 1800, as InitProcessGroupKwargs. InitProcessGroupKwargs(timeoutSeconds) in code wins.', { valueName: 'seconds' }),
  f('main_process_ip', 'string', 'distributed', 'native', 'Address of the machine running rank 0.', { valueName: 'ip' }),
  f('main_process_port', 'integer', 'distributed', 'native', 'Port of rank 0; 0 or absent on one machine = a free port.', { valueName: 'port' }),
  f('tee', 'string', 'distributed', 'native', 'With --log_dir: also write 1 = stdout, 2 = stderr, 3 = both to log files (per rank: "0:3,1:1").', { short: 't', default: '0', valueName: 'streams' }),
  f('log_dir', 'string', 'distributed', 'native', 'Folder for per-rank log files (rank_<N>/stdout.log, stderr.log), selected by --tee.', { valueName: 'dir' }),
  f('role', 'string', 'distributed', 'native', 'Role name of the workers (ROLE_NAME).', { default: 'default', valueName: 'name' }),
  f('rdzv_backend', 'string', 'distributed', 'native', 'Rendezvous backend; accelerate-ts uses static rendezvous at main_process_ip:main_process_port.', { default: 'static', valueName: 'name' }),
  f('rdzv_conf', 'string', 'distributed', 'native', 'Extra rendezvous settings (not used by static rendezvous).', { default: '', valueName: 'conf' }),
  f('max_restarts', 'integer', 'distributed', 'native', 'Restarts of the worker group before failing; only 0 is supported.', { default: 0, valueName: 'n' }),
  f('monitor_interval', 'number', 'distributed', 'native', 'Seconds between worker checks (the launcher is event-driven and reacts at once).', { default: 0.1, valueName: 'seconds' }),
  // TPU
  f('tpu_cluster', 'boolean', 'tpu', 'unsupported', UNSUPPORTED_TPU),
  f('no_tpu_cluster', 'boolean', 'tpu', 'unsupported', UNSUPPORTED_TPU),
  f('tpu_use_sudo', 'boolean', 'tpu', 'unsupported', UNSUPPORTED_TPU),
  f('vm', 'list', 'tpu', 'unsupported', UNSUPPORTED_TPU, { valueName: 'name' }),
  f('env', 'list', 'tpu', 'unsupported', UNSUPPORTED_TPU, { valueName: 'var' }),
  f('main_training_function', 'string', 'tpu', 'unsupported', UNSUPPORTED_TPU, { valueName: 'name' }),
  f('downcast_bf16', 'boolean', 'tpu', 'unsupported', UNSUPPORTED_TPU),
  // DeepSpeed
  f('deepspeed_config_file', 'string', 'deepspeed', 'env', 'DeepSpeed JSON config (ACCELERATE_DEEPSPEED_CONFIG_FILE).', { valueName: 'path' }),
  f('zero_stage', 'integer', 'deepspeed', 'env', 'ZeRO stage.', { valueName: 'n' }),
  f('offload_optimizer_device', 'string', 'deepspeed', 'env', 'none, cpu or nvme.', { valueName: 'device' }),
  f('offload_param_device', 'string', 'deepspeed', 'env', 'none, cpu or nvme.', { valueName: 'device' }),
  f('offload_optimizer_nvme_path', 'string', 'deepspeed', 'env', 'NVMe path for optimizer offload.', { valueName: 'path' }),
  f('offload_param_nvme_path', 'string', 'deepspeed', 'env', 'NVMe path for parameter offload.', { valueName: 'path' }),
  f('gradient_accumulation_steps', 'integer', 'deepspeed', 'native', 'Gradient accumulation steps (ACCELERATE_GRADIENT_ACCUMULATION_STEPS).', { valueName: 'n' }),
  f('gradient_clipping', 'number', 'deepspeed', 'env', 'Gradient clipping value (DeepSpeed).', { valueName: 'x' }),
  f('zero3_init_flag', 'boolish', 'deepspeed', 'env', 'deepspeed.zero.Init for huge models (ZeRO-3).', { valueName: 'bool' }),
  f('zero3_save_16bit_model', 'boolish', 'deepspeed', 'env', 'Save 16-bit weights with ZeRO-3.', { valueName: 'bool' }),
  f('deepspeed_hostfile', 'string', 'deepspeed', 'env', 'Hostfile for multi-node DeepSpeed.', { valueName: 'path' }),
  f('deepspeed_exclusion_filter', 'string', 'deepspeed', 'env', 'DeepSpeed host exclusion filter.', { valueName: 'filter' }),
  f('deepspeed_inclusion_filter', 'string', 'deepspeed', 'env', 'DeepSpeed host inclusion filter.', { valueName: 'filter' }),
  f('deepspeed_multinode_launcher', 'string', 'deepspeed', 'env', 'Multi-node DeepSpeed launcher.', { choices: ['pdsh', 'standard', 'openmpi', 'mvapich', 'mpich', 'nossh', 'slurm'], valueName: 'name' }),
  f('deepspeed_moe_layer_cls_names', 'string', 'deepspeed', 'env', 'Comma-separated MoE layer class names.', { valueName: 'names' }),
  // FSDP (defaults are the CLI's, which differ from the plugin's)
  f('fsdp_version', 'string', 'fsdp', 'env', 'FSDP version.', { choices: ['1', '2'], default: '1', valueName: 'v' }),
  f('fsdp_offload_params', 'boolish', 'fsdp', 'env', 'Offload parameters and gradients to CPU.', { default: false, valueName: 'bool' }),
  f('fsdp_min_num_params', 'integer', 'fsdp', 'env', 'Minimum parameters per unit (size-based wrap).', { default: 100_000_000, valueName: 'n' }),
  f('fsdp_sharding_strategy', 'string', 'fsdp', 'env', 'FSDP1 sharding strategy.', { default: 'FULL_SHARD', valueName: 'name' }),
  f('fsdp_reshard_after_forward', 'string', 'fsdp', 'env', 'FSDP2: reshard after forward (bool); FSDP1: the strategy.', { default: 'true', valueName: 'value' }),
  f('fsdp_auto_wrap_policy', 'string', 'fsdp', 'env', 'TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP or NO_WRAP.', { valueName: 'policy' }),
  f('fsdp_transformer_layer_cls_to_wrap', 'string', 'fsdp', 'env', 'Comma-separated layer class names to wrap.', { valueName: 'names' }),
  f('fsdp_backward_prefetch', 'string', 'fsdp', 'env', 'Backward prefetch policy.', { valueName: 'policy' }),
  f('fsdp_state_dict_type', 'string', 'fsdp', 'env', 'State dict type for checkpoints.', { valueName: 'type' }),
  f('fsdp_forward_prefetch', 'boolish', 'fsdp', 'env', 'Prefetch the next all-gather in forward.', { default: false, valueName: 'bool' }),
  f('fsdp_use_orig_params', 'boolish', 'fsdp', 'env', 'Allow mixed requires_grad parameters.', { default: true, valueName: 'bool' }),
  f('fsdp_cpu_ram_efficient_loading', 'boolish', 'fsdp', 'env', 'Only rank 0 loads the checkpoint (needs --fsdp_sync_module_states true).', { default: true, valueName: 'bool' }),
  f('fsdp_sync_module_states', 'boolish', 'fsdp', 'env', 'Broadcast module states from rank 0.', { default: true, valueName: 'bool' }),
  f('fsdp_activation_checkpointing', 'boolish', 'fsdp', 'env', 'Recompute activations in backward.', { default: false, valueName: 'bool' }),
  // Megatron-LM
  f('megatron_lm_tp_degree', 'integer', 'megatron_lm', 'env', 'Tensor parallelism degree.', { default: 1, valueName: 'n' }),
  f('megatron_lm_use_custom_fsdp', 'boolish', 'megatron_lm', 'env', 'Use Megatron custom FSDP.', { default: false, valueName: 'bool' }),
  f('megatron_lm_no_load_optim', 'boolish', 'megatron_lm', 'env', 'Do not load the optimizer.', { default: false, valueName: 'bool' }),
  f('megatron_lm_eod_mask_loss', 'boolish', 'megatron_lm', 'env', 'Mask the loss at end-of-document tokens.', { default: false, valueName: 'bool' }),
  f('megatron_lm_overlap_cpu_optimizer_d2h_h2d', 'boolish', 'megatron_lm', 'env', 'Overlap CPU optimizer step with transfers.', { default: false, valueName: 'bool' }),
  f('megatron_lm_no_save_optim', 'boolish', 'megatron_lm', 'env', 'Do not save the optimizer.', { default: false, valueName: 'bool' }),
  f('megatron_lm_optimizer_cpu_offload', 'boolish', 'megatron_lm', 'env', 'Offload the optimizer to CPU.', { default: false, valueName: 'bool' }),
  f('megatron_lm_use_precision_aware_optimizer', 'boolish', 'megatron_lm', 'env', 'Precision-aware optimizer.', { default: false, valueName: 'bool' }),
  f('megatron_lm_decoder_last_pipeline_num_layers', 'integer', 'megatron_lm', 'env', 'Decoder layers in the last pipeline stage.', { valueName: 'n' }),
  f('megatron_lm_pp_degree', 'integer', 'megatron_lm', 'env', 'Pipeline parallelism degree.', { default: 1, valueName: 'n' }),
  f('megatron_lm_num_micro_batches', 'integer', 'megatron_lm', 'env', 'Micro-batches when the PP degree > 1.', { valueName: 'n' }),
  f('megatron_lm_sequence_parallelism', 'string', 'megatron_lm', 'env', 'Sequence parallelism.', { valueName: 'bool' }),
  f('megatron_lm_recompute_activations', 'string', 'megatron_lm', 'env', 'Selective activation recomputation.', { valueName: 'bool' }),
  f('megatron_lm_use_distributed_optimizer', 'string', 'megatron_lm', 'env', 'Shard optimizer state over data-parallel ranks.', { valueName: 'bool' }),
  f('megatron_lm_gradient_clipping', 'number', 'megatron_lm', 'env', 'Global L2-norm gradient clipping.', { default: 1.0, valueName: 'x' }),
  f('megatron_lm_recompute_granularity', 'string', 'megatron_lm', 'env', 'full or selective.', { valueName: 'g' }),
  f('megatron_lm_recompute_method', 'string', 'megatron_lm', 'env', 'uniform or block.', { valueName: 'm' }),
  f('megatron_lm_recompute_num_layers', 'integer', 'megatron_lm', 'env', 'Layers to recompute.', { valueName: 'n' }),
  f('megatron_lm_attention_backend', 'string', 'megatron_lm', 'env', 'Attention backend.', { valueName: 'name' }),
  f('megatron_lm_expert_model_parallel_size', 'integer', 'megatron_lm', 'env', 'Expert model parallel size.', { valueName: 'n' }),
  f('megatron_lm_context_parallel_size', 'integer', 'megatron_lm', 'env', 'Context parallel size.', { valueName: 'n' }),
  f('megatron_lm_attention_dropout', 'number', 'megatron_lm', 'env', 'Attention dropout rate.', { valueName: 'p' }),
  f('megatron_lm_hidden_dropout', 'number', 'megatron_lm', 'env', 'Hidden dropout rate.', { valueName: 'p' }),
  f('megatron_lm_attention_softmax_in_fp32', 'string', 'megatron_lm', 'env', 'Attention softmax in fp32.', { valueName: 'bool' }),
  f('megatron_lm_expert_tensor_parallel_size', 'integer', 'megatron_lm', 'env', 'Expert tensor parallel size.', { valueName: 'n' }),
  f('megatron_lm_calculate_per_token_loss', 'string', 'megatron_lm', 'env', 'Per-token loss.', { valueName: 'bool' }),
  f('megatron_lm_use_rotary_position_embeddings', 'string', 'megatron_lm', 'env', 'Rotary position embeddings.', { valueName: 'bool' }),
  // FP8
  f('fp8_backend', 'string', 'fp8', 'env', 'ao, te or msamp.', { choices: ['ao', 'te', 'msamp'], valueName: 'name' }),
  f('fp8_use_autocast_during_eval', 'boolean', 'fp8', 'env', 'FP8 autocast in eval mode (TE).'),
  f('fp8_margin', 'integer', 'fp8', 'env', 'Scaling-factor margin (TE).', { default: 0, valueName: 'n' }),
  f('fp8_interval', 'integer', 'fp8', 'env', 'Scaling-factor recompute interval (TE).', { default: 1, valueName: 'n' }),
  f('fp8_format', 'string', 'fp8', 'env', 'HYBRID, E4M3 or E5M2 (TE).', { choices: ['HYBRID', 'E4M3', 'E5M2'], default: 'HYBRID', valueName: 'format' }),
  f('fp8_amax_history_len', 'integer', 'fp8', 'env', 'Amax history length (TE).', { default: 1024, valueName: 'n' }),
  f('fp8_amax_compute_algo', 'string', 'fp8', 'env', 'max or most_recent (TE).', { choices: ['max', 'most_recent'], default: 'most_recent', valueName: 'algo' }),
  f('fp8_override_linear_precision', 'string', 'fp8', 'env', 'Three booleans a,b,c: fprop, dgrad, wgrad GEMMs in higher precision (TE).', { default: 'false,false,false', valueName: 'a,b,c' }),
  f('fp8_opt_level', 'string', 'fp8', 'env', 'O1 or O2 (MS-AMP).', { choices: ['O1', 'O2'], default: 'O2', valueName: 'level' }),
  f('fp8_enable_fsdp_float8_all_gather', 'boolish', 'fp8', 'env', 'FSDP2 float8 all-gather (torchao).', { default: true, valueName: 'bool' }),
  f('fp8_pad_inner_dim', 'boolish', 'fp8', 'env', 'Pad inner dimensions for float8 matmuls (torchao).', { default: true, valueName: 'bool' }),
  // AWS / MPI
  f('aws_access_key_id', 'string', 'aws', 'unsupported', 'SageMaker launching is not supported by accelerate-ts.', { valueName: 'id' }),
  f('aws_secret_access_key', 'string', 'aws', 'unsupported', 'SageMaker launching is not supported by accelerate-ts.', { valueName: 'key' }),
  f('mpirun_hostfile', 'string', 'mpirun', 'unsupported', 'mpirun launching is not supported by accelerate-ts: start the script with mpirun yourself, it joins through the OMPI_*/PMI_* variables.', { valueName: 'path' }),
  // parallelism config
  f('parallelism_config_dp_replicate_size', 'integer', 'parallelism', 'env', 'Data-parallel replicas.', { default: 1, valueName: 'n' }),
  f('parallelism_config_dp_shard_size', 'integer', 'parallelism', 'env', 'FSDP shard group size.', { default: 1, valueName: 'n' }),
  f('parallelism_config_tp_size', 'integer', 'parallelism', 'env', 'Tensor parallel size.', { default: 1, valueName: 'n' }),
  f('parallelism_config_cp_size', 'integer', 'parallelism', 'env', 'Context parallel size.', { default: 1, valueName: 'n' }),
  f('parallelism_config_cp_backend', 'string', 'parallelism', 'env', 'Context parallel backend.', { choices: ['torch'], default: 'torch', valueName: 'name' }),
  f('parallelism_config_cp_comm_strategy', 'string', 'parallelism', 'env', 'allgather or alltoall.', { default: 'allgather', valueName: 'name' }),
  f('parallelism_config_sp_size', 'integer', 'parallelism', 'env', 'Sequence parallel size.', { default: 1, valueName: 'n' }),
  f('parallelism_config_sp_backend', 'string', 'parallelism', 'env', 'Sequence parallel backend.', { choices: ['deepspeed'], default: 'deepspeed', valueName: 'name' }),
  f('parallelism_config_sp_seq_length', 'string', 'parallelism', 'env', 'Sequence length when all batches share one.', { valueName: 'n' }),
  f('parallelism_config_sp_seq_length_is_variable', 'boolish', 'parallelism', 'env', 'Sequence length may change between batches.', { default: true, valueName: 'bool' }),
  f('parallelism_config_sp_attn_implementation', 'string', 'parallelism', 'env', 'Attention implementation.', { default: 'sdpa', valueName: 'name' }),
];

const BY_NAME = new Map(LAUNCH_FLAGS.map((s) => [s.name, s]));

/** The spec of flag `name` (snake_case, without dashes), or undefined. */
export function launchFlag(name: string): LaunchFlagSpec | undefined {
  return BY_NAME.get(name);
}

/**
 * Thrown when a launch flag, a config value or a combination of them is
 * wrong. The message names the flag, the value and how to fix it.
 */
export class LaunchError extends Error {
  override name = 'LaunchError';
  /**
   * Every problem found, when the launch settings were checked as a whole
   * (the message then lists them all); otherwise just this error's message.
   */
  readonly problems: readonly string[];
  constructor(message: string, problems?: readonly string[]) {
    super(message);
    this.problems = problems ?? [message];
  }
}

/** Python-style bool text (`true`, `False`, `yes`, `0`, …) -> boolean, or undefined when it is none of them. */
function readBool(raw: string): boolean | undefined {
  try {
    return parseBoolEnv('flag', raw);
  } catch {
    return undefined;
  }
}

/**
 * Reads one flag value from its command-line text, checking type and
 * choices. Errors name the flag (`--num_processes`), the value and what is
 * allowed.
 */
export function parseLaunchFlagValue(spec: LaunchFlagSpec, raw: string): LaunchValue {
  const flag = `--${spec.name}`;
  const text = raw.trim();
  switch (spec.type) {
    case 'boolean':
    case 'boolish': {
      const b = readBool(text);
      if (b === undefined) throw new LaunchError(`${flag} got ${JSON.stringify(raw)}; pass true or false (also yes/no, 1/0).`);
      return b;
    }
    case 'integer': {
      if (!/^[+-]?\d+$/.test(text)) throw new LaunchError(`${flag} got ${JSON.stringify(raw)}, which is not a whole number; pass e.g. ${flag} ${spec.default ?? 2}.`);
      return Number(text);
    }
    case 'number': {
      const n = Number(text);
      if (text === '' || !Number.isFinite(n)) throw new LaunchError(`${flag} got ${JSON.stringify(raw)}, which is not a number; pass e.g. ${flag} ${spec.default ?? (spec.valueName === 'seconds' ? 600 : 1)}.`);
      return n;
    }
    case 'list':
      return [raw];
    case 'string': {
      if (!spec.choices) return raw;
      const hit = spec.choices.find((c) => c.toLowerCase() === text.toLowerCase());
      if (hit !== undefined) return hit;
      const near = suggestClosest(text, spec.choices);
      throw new LaunchError(
        `${flag} got ${JSON.stringify(raw)}; choose one of ${spec.choices.join(', ')}${near ? ` (did you mean ${near}?)` : ''}.`,
      );
    }
  }
}

/**
 * Checks a value that came from code or a config file against the flag's
 * type (numbers as numbers, booleans as booleans or Python bool strings) and
 * returns it normalised; `where` names its origin in the error.
 */
export function coerceLaunchValue(spec: LaunchFlagSpec, value: unknown, where: string): LaunchValue {
  if (typeof value === 'string' && spec.type !== 'string' && spec.type !== 'list') {
    try {
      return parseLaunchFlagValue(spec, value);
    } catch (e) {
      throw new LaunchError(`${where}: ${(e as Error).message}`);
    }
  }
  const bad = (expected: string) =>
    new LaunchError(`${where} has value ${JSON.stringify(value)} for ${spec.name}, expected ${expected}.`);
  switch (spec.type) {
    case 'boolean':
    case 'boolish':
      if (typeof value !== 'boolean') throw bad('true or false');
      return value;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) throw bad('a whole number');
      return value;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw bad('a number');
      return value;
    case 'list':
      if (typeof value === 'string') return [value];
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw bad('a list of strings');
      return value as string[];
    case 'string':
      if (typeof value === 'number' || typeof value === 'boolean') return coerceLaunchValue(spec, String(value), where);
      if (typeof value !== 'string') throw bad('a string');
      return parseLaunchFlagValue(spec, value);
  }
}
