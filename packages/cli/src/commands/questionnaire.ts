/**
 * The `accelerate config` questionnaire: the same questions, in the same
 * order and with the same defaults as Python Accelerate's
 * (`commands/config/cluster.py`), producing the same keys, so the file it
 * writes is the one Python would write for the same answers.
 *
 * Differences: no SageMaker questions (write that file by hand), and no
 * checks that DeepSpeed/TransformerEngine/… are installed (they are Python
 * packages; the plugins check at run time).
 * @module
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { validateConfigDict, type ClusterConfigFile, type ConfigDistributedType } from '@accelerate/core';
import {
  DEEPSPEED_MULTINODE_LAUNCHERS,
  DYNAMO_BACKENDS,
  DYNAMO_MODES,
  FSDP_AUTO_WRAP_POLICIES,
  FSDP_BACKWARD_PREFETCH,
  FSDP_SHARDING_STRATEGIES,
  FSDP_STATE_DICT_TYPES,
  SETTINGS,
} from '@accelerate/core/internal';
import { CliError } from '../context.js';
import type { Choice, Prompter } from '../prompter.js';

const MACHINE_TYPES: readonly Choice<ConfigDistributedType>[] = [
  { name: 'No distributed training', value: 'NO' },
  { name: 'multi-CPU', value: 'MULTI_CPU' },
  { name: 'multi-XPU', value: 'MULTI_XPU' },
  { name: 'multi-HPU', value: 'MULTI_HPU' },
  { name: 'multi-GPU', value: 'MULTI_GPU' },
  { name: 'multi-NPU', value: 'MULTI_NPU' },
  { name: 'multi-MLU', value: 'MULTI_MLU' },
  { name: 'multi-SDAA', value: 'MULTI_SDAA' },
  { name: 'multi-MUSA', value: 'MULTI_MUSA' },
  { name: 'multi-NEURON', value: 'MULTI_NEURON' },
  { name: 'TPU', value: 'XLA' },
];

const MULTI_DEVICE: readonly ConfigDistributedType[] = [
  'MULTI_GPU',
  'MULTI_MLU',
  'MULTI_SDAA',
  'MULTI_MUSA',
  'MULTI_NPU',
  'MULTI_XPU',
  'MULTI_HPU',
  'MULTI_NEURON',
];
const MULTI_ANY: readonly ConfigDistributedType[] = [...MULTI_DEVICE, 'MULTI_CPU'];

const choices = <T extends string | number>(values: readonly T[]): Choice<T>[] => values.map((v) => ({ name: String(v), value: v }));
const expandHome = (p: string) => (p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p);

/** Asks the local-machine questions and returns the config (Python's dataclass defaults filled in). */
export async function askClusterConfig(ask: Prompter): Promise<ClusterConfigFile> {
  const environment = await ask.select({
    id: 'compute_environment',
    message: 'In which compute environment are you running?',
    choices: [
      { name: 'This machine', value: 'LOCAL_MACHINE' },
      { name: 'AWS (Amazon SageMaker)', value: 'AMAZON_SAGEMAKER' },
    ],
  });
  if (environment === 'AMAZON_SAGEMAKER') {
    throw new CliError(
      'accelerate-ts cannot launch on Amazon SageMaker, so `accelerate config` does not ask its questions; ' +
        'write a SageMaker config by hand (compute_environment: AMAZON_SAGEMAKER, distributed_type, ec2_instance_type, iam_role_name, …) if another tool needs it.',
    );
  }

  let distributedType = await ask.select({
    id: 'distributed_type',
    message: 'Which type of machine are you using?',
    choices: MACHINE_TYPES,
  });

  let machineRank = 0;
  let numMachines = 1;
  let numProcesses = 1;
  let gpuIds: string | null = null;
  let mainProcessIp: string | null = null;
  let mainProcessPort: number | null = null;
  let rdzvBackend = 'static';
  let sameNetwork = true;
  let debug = false;

  if (MULTI_ANY.includes(distributedType)) {
    numMachines = await ask.number({
      id: 'num_machines',
      message: 'How many different machines will you use (use more than 1 for multi-node training)?',
      default: 1,
      min: 1,
    });
    if (numMachines > 1) {
      machineRank = await ask.select({
        id: 'machine_rank',
        message: 'What is the rank of this machine?',
        choices: choices(Array.from({ length: numMachines }, (_, i) => i)),
      });
      mainProcessIp = await ask.input({
        id: 'main_process_ip',
        message: 'What is the IP address of the machine that will host the main process?',
        required: true,
      });
      mainProcessPort = await ask.number({
        id: 'main_process_port',
        message: 'What is the port you will use to communicate with the main process?',
        min: 0,
        max: 65535,
      });
      sameNetwork = await ask.confirm({
        id: 'same_network',
        message: 'Are all the machines on the same local network? Answer no if nodes are on the cloud and/or on different network hosts',
        default: true,
      });
      if (!sameNetwork) {
        rdzvBackend = await ask.input({
          id: 'rdzv_backend',
          message: "What rendezvous backend will you use? ('static', 'c10d', ...)",
          default: 'static',
        });
      }
    }
    debug = await ask.confirm({
      id: 'debug',
      message: 'Should distributed operations be checked while running for errors? This can avoid timeout issues but will be slower.',
      default: false,
    });
  }

  let useCpu: boolean;
  if (distributedType === 'NO') {
    useCpu = await ask.confirm({
      id: 'use_cpu',
      message: 'Do you want to run your training on CPU only (even if an accelerator is available)?',
      default: false,
    });
  } else {
    useCpu = distributedType === 'MULTI_CPU';
  }

  const mpirunConfig: Record<string, unknown> = {};
  if (useCpu && distributedType === 'MULTI_CPU') {
    const useMpirun = await ask.confirm({ id: 'use_mpirun', message: 'Do you want accelerate to launch mpirun?', default: false });
    if (useMpirun) {
      const hostfile = await ask.input({
        id: 'mpirun_hostfile',
        message: 'Please enter the path to the hostfile to use with mpirun',
        default: '~/hostfile',
      });
      mpirunConfig.mpirun_hostfile = expandHome(hostfile.trim());
    }
  }

  const dynamoConfig: Record<string, unknown> = {};
  const useDynamo = await ask.confirm({ id: 'use_dynamo', message: 'Do you wish to optimize your script with torch dynamo?', default: false });
  if (useDynamo) {
    dynamoConfig.dynamo_backend = await ask.select({
      id: 'dynamo_backend',
      message: 'Which dynamo backend would you like to use?',
      choices: DYNAMO_BACKENDS.filter((b) => b !== 'NO').map((b) => ({ name: b.toLowerCase(), value: b })),
      default: 'INDUCTOR',
    });
    const custom = await ask.confirm({
      id: 'dynamo_custom_options',
      message: 'Do you want to customize the defaults sent to torch.compile?',
      default: false,
    });
    if (custom) {
      dynamoConfig.dynamo_mode = await ask.select({ id: 'dynamo_mode', message: 'Which mode do you want to use?', choices: choices(DYNAMO_MODES), default: 'default' });
      dynamoConfig.dynamo_use_fullgraph = await ask.confirm({
        id: 'dynamo_use_fullgraph',
        message: 'Do you want the fullgraph mode or it is ok to break model into several subgraphs?',
        default: false,
      });
      dynamoConfig.dynamo_use_dynamic = await ask.confirm({ id: 'dynamo_use_dynamic', message: 'Do you want to enable dynamic shape tracing?', default: false });
      dynamoConfig.dynamo_use_regional_compilation = await ask.confirm({
        id: 'dynamo_use_regional_compilation',
        message: 'Do you want to enable regional compilation?',
        default: false,
      });
    }
  }

  // ---- DeepSpeed ------------------------------------------------------------------
  const deepspeedConfig: Record<string, unknown> = {};
  let useDeepspeedConfigFile = false;
  if ([...MULTI_DEVICE, 'NO'].includes(distributedType) && !useCpu) {
    const useDeepspeed = await ask.confirm({ id: 'use_deepspeed', message: 'Do you want to use DeepSpeed?', default: false });
    if (useDeepspeed) {
      if (distributedType === 'MULTI_NEURON') throw new CliError('DeepSpeed is not supported on Neuron devices.');
      distributedType = 'DEEPSPEED';
    }
    if (distributedType === 'DEEPSPEED') {
      useDeepspeedConfigFile = await ask.confirm({
        id: 'use_deepspeed_config_file',
        message: 'Do you want to specify a json file to a DeepSpeed config?',
        default: false,
      });
      if (useDeepspeedConfigFile) {
        deepspeedConfig.deepspeed_config_file = await ask.input({
          id: 'deepspeed_config_file',
          message: 'Please enter the path to the json DeepSpeed config file',
          default: 'none',
        });
      } else {
        const stage = await ask.select({ id: 'zero_stage', message: "What should be your DeepSpeed's ZeRO optimization stage?", choices: choices(SETTINGS.deepspeed.zeroStage.enum as readonly (0 | 1 | 2 | 3)[]), default: SETTINGS.deepspeed.zeroStage.default });
        deepspeedConfig.zero_stage = stage;
        const devices = SETTINGS.deepspeed.offloadOptimizerDevice.enum as readonly ('none' | 'cpu' | 'nvme')[];
        if (stage >= 2) {
          deepspeedConfig.offload_optimizer_device = await ask.select({ id: 'offload_optimizer_device', message: 'Where to offload optimizer states?', choices: choices(devices) });
          deepspeedConfig.offload_param_device = await ask.select({ id: 'offload_param_device', message: 'Where to offload parameters?', choices: choices(devices) });
          if (deepspeedConfig.offload_param_device === 'nvme') {
            deepspeedConfig.offload_param_nvme_path = await ask.input({ id: 'offload_param_nvme_path', message: 'Nvme Path to offload parameters?', default: '/nvme' });
          }
          if (deepspeedConfig.offload_optimizer_device === 'nvme') {
            deepspeedConfig.offload_optimizer_nvme_path = await ask.input({
              id: 'offload_optimizer_nvme_path',
              message: 'Nvme Path to offload optimizer states?',
              default: '/nvme',
            });
          }
        }
        deepspeedConfig.gradient_accumulation_steps = await ask.number({
          id: 'gradient_accumulation_steps',
          message: "How many gradient accumulation steps you're passing in your script?",
          default: 1,
          min: 1,
        });
        if (await ask.confirm({ id: 'use_gradient_clipping', message: 'Do you want to use gradient clipping?', default: false })) {
          deepspeedConfig.gradient_clipping = await ask.number({
            id: 'gradient_clipping',
            message: 'What is the gradient clipping value?',
            default: 1.0,
            integer: false,
          });
        }
        if (stage === 3) {
          deepspeedConfig.zero3_save_16bit_model = await ask.confirm({
            id: 'zero3_save_16bit_model',
            message: 'Do you want to save 16-bit model weights when using ZeRO Stage-3?',
            default: false,
          });
        }
      }
      deepspeedConfig.zero3_init_flag = await ask.confirm({
        id: 'zero3_init_flag',
        message: 'Do you want to enable `deepspeed.zero.Init` when using ZeRO Stage-3 for constructing massive models?',
        default: false,
      });
      if (await ask.confirm({ id: 'use_moe', message: 'Do you want to enable Mixture-of-Experts training (MoE)?', default: false })) {
        deepspeedConfig.deepspeed_moe_layer_cls_names = await ask.input({
          id: 'deepspeed_moe_layer_cls_names',
          message: 'Specify the comma-separated list of MoE layer class names (case-sensitive), e.g. MixtralSparseMoeBlock',
          required: true,
        });
      }
      if (numMachines > 1) {
        const launcher = await ask.select({
          id: 'deepspeed_multinode_launcher',
          message: 'Which Type of launcher do you want to use?',
          choices: choices(DEEPSPEED_MULTINODE_LAUNCHERS),
        });
        deepspeedConfig.deepspeed_multinode_launcher = launcher;
        if (launcher !== 'standard') {
          deepspeedConfig.deepspeed_hostfile = await ask.input({
            id: 'deepspeed_hostfile',
            message: 'DeepSpeed hostfile (rows of `hostname slots=N`): please specify its location',
            required: true,
          });
          if (await ask.confirm({ id: 'use_exclusion_filter', message: 'Do you want to specify exclusion filter string?', default: false })) {
            deepspeedConfig.deepspeed_exclusion_filter = await ask.input({ id: 'deepspeed_exclusion_filter', message: 'DeepSpeed exclusion filter string:', required: true });
          }
          if (await ask.confirm({ id: 'use_inclusion_filter', message: 'Do you want to specify inclusion filter string?', default: false })) {
            deepspeedConfig.deepspeed_inclusion_filter = await ask.input({ id: 'deepspeed_inclusion_filter', message: 'DeepSpeed inclusion filter string:', required: true });
          }
        }
      }
    }
  }

  // ---- FSDP --------------------------------------------------------------------------
  const fsdpConfig: Record<string, unknown> = {};
  if (MULTI_DEVICE.includes(distributedType)) {
    if (await ask.confirm({ id: 'use_fsdp', message: 'Do you want to use FullyShardedDataParallel?', default: false })) {
      if (distributedType === 'MULTI_NEURON') throw new CliError('FSDP is not currently supported on Neuron devices.');
      distributedType = 'FSDP';
    }
    if (distributedType === 'FSDP') {
      const version = await ask.select({ id: 'fsdp_version', message: 'What should be your FSDP version?', choices: choices(SETTINGS.fsdp.version.enum as readonly (1 | 2)[]), default: 2 });
      fsdpConfig.fsdp_version = version;
      fsdpConfig.fsdp_reshard_after_forward =
        version === 1
          ? await ask.select({ id: 'fsdp_reshard_after_forward', message: 'What should be your sharding strategy?', choices: choices(FSDP_SHARDING_STRATEGIES) })
          : await ask.confirm({ id: 'fsdp_reshard_after_forward', message: 'Do you want to enable resharding after forward?', default: true });
      fsdpConfig.fsdp_offload_params = await ask.confirm({
        id: 'fsdp_offload_params',
        message: 'Do you want to offload parameters and gradients to CPU?',
        default: false,
      });
      const policy = await ask.select({ id: 'fsdp_auto_wrap_policy', message: 'What should be your auto wrap policy?', choices: choices(FSDP_AUTO_WRAP_POLICIES) });
      fsdpConfig.fsdp_auto_wrap_policy = policy;
      if (policy === 'TRANSFORMER_BASED_WRAP') {
        const noSplit = await ask.confirm({
          id: 'fsdp_use_no_split_modules',
          message: "Do you want to use the model's `_no_split_modules` to wrap (Transformers models only)?",
          default: false,
        });
        if (!noSplit) {
          fsdpConfig.fsdp_transformer_layer_cls_to_wrap = await ask.input({
            id: 'fsdp_transformer_layer_cls_to_wrap',
            message: 'Specify the comma-separated list of transformer layer class names (case-sensitive) to wrap, e.g. BertLayer,GPTJBlock',
            required: true,
          });
        }
      } else if (policy === 'SIZE_BASED_WRAP') {
        fsdpConfig.fsdp_min_num_params = await ask.number({
          id: 'fsdp_min_num_params',
          message: "What should be your FSDP's minimum number of parameters for Default Auto Wrapping Policy?",
          default: 100000000,
          min: 0,
        });
      }
      if (version === 1) {
        fsdpConfig.fsdp_backward_prefetch = await ask.select({
          id: 'fsdp_backward_prefetch',
          message: "What should be your FSDP's backward prefetch policy?",
          choices: choices(FSDP_BACKWARD_PREFETCH),
        });
      }
      fsdpConfig.fsdp_state_dict_type = await ask.select({
        id: 'fsdp_state_dict_type',
        message: "What should be your FSDP's state dict type?",
        choices: choices(version === 1 ? FSDP_STATE_DICT_TYPES : (['SHARDED_STATE_DICT', 'FULL_STATE_DICT'] as const)),
      });
      if (version === 1) {
        fsdpConfig.fsdp_forward_prefetch = await ask.confirm({
          id: 'fsdp_forward_prefetch',
          message: "Do you want to enable FSDP's forward prefetch policy?",
          default: false,
        });
        fsdpConfig.fsdp_use_orig_params = await ask.confirm({
          id: 'fsdp_use_orig_params',
          message: "Do you want to enable FSDP's `use_orig_params` feature?",
          default: true,
        });
      }
      fsdpConfig.fsdp_cpu_ram_efficient_loading = await ask.confirm({
        id: 'fsdp_cpu_ram_efficient_loading',
        message: 'Do you want to enable CPU RAM efficient model loading (Transformers models only)?',
        default: true,
      });
      if (version === 1) {
        fsdpConfig.fsdp_sync_module_states = fsdpConfig.fsdp_cpu_ram_efficient_loading
          ? true
          : await ask.confirm({
              id: 'fsdp_sync_module_states',
              message: 'Do you want each individually wrapped FSDP unit to broadcast module parameters from rank 0 at the start?',
              default: true,
            });
      }
      fsdpConfig.fsdp_activation_checkpointing = await ask.confirm({
        id: 'fsdp_activation_checkpointing',
        message: 'Do you want to enable FSDP activation checkpointing?',
        default: false,
      });
    }
  }

  const parallelismConfig: Record<string, unknown> = {};
  if (fsdpConfig.fsdp_version === 2) {
    if (await ask.confirm({ id: 'use_parallelism_config', message: 'Do you want to use the parallelism config?', default: false })) {
      const p = 'parallelism_config_';
      parallelismConfig[`${p}dp_replicate_size`] = await ask.number({ id: `${p}dp_replicate_size`, message: 'What is the data parallelism replicate size?', default: 1, min: 1 });
      parallelismConfig[`${p}dp_shard_size`] = await ask.number({ id: `${p}dp_shard_size`, message: 'What is the FSDP shard size?', default: 1, min: 1 });
      parallelismConfig[`${p}tp_size`] = await ask.number({ id: `${p}tp_size`, message: 'What is the tensor parallelism size?', default: 1, min: 1 });
      const cp = await ask.number({ id: `${p}cp_size`, message: 'What is the context parallelism size?', default: 1, min: 1 });
      parallelismConfig[`${p}cp_size`] = cp;
      if (cp > 1) {
        parallelismConfig[`${p}cp_comm_strategy`] = await ask.select({
          id: `${p}cp_comm_strategy`,
          message: 'What is the context parallelism communication strategy?',
          choices: choices(['allgather', 'alltoall'] as const),
        });
      }
    }
  }

  // ---- Megatron-LM ------------------------------------------------------------------------
  const megatronConfig: Record<string, unknown> = {};
  if (distributedType === 'MULTI_GPU') {
    if (await ask.confirm({ id: 'use_megatron_lm', message: 'Do you want to use Megatron-LM?', default: false })) {
      distributedType = 'MEGATRON_LM';
    }
    if (distributedType === 'MEGATRON_LM') {
      const p = 'megatron_lm_';
      const tp = await ask.number({ id: `${p}tp_degree`, message: 'What is the Tensor Parallelism degree/size?', default: 1, min: 1 });
      megatronConfig[`${p}tp_degree`] = tp;
      if (tp > 1) {
        megatronConfig[`${p}sequence_parallelism`] = await ask.confirm({ id: `${p}sequence_parallelism`, message: 'Do you want to enable Sequence Parallelism?', default: true });
      }
      const pp = await ask.number({ id: `${p}pp_degree`, message: 'What is the Pipeline Parallelism degree/size?', default: 1, min: 1 });
      megatronConfig[`${p}pp_degree`] = pp;
      if (pp > 1) {
        megatronConfig[`${p}num_micro_batches`] = await ask.number({ id: `${p}num_micro_batches`, message: 'What is the number of micro-batches?', default: 1, min: 1 });
      }
      megatronConfig[`${p}recompute_activations`] = await ask.confirm({
        id: `${p}recompute_activations`,
        message: 'Do you want to enable selective activation recomputation?',
        default: true,
      });
      megatronConfig[`${p}use_distributed_optimizer`] = await ask.confirm({
        id: `${p}use_distributed_optimizer`,
        message: 'Do you want to use distributed optimizer which shards optimizer state and gradients across data parallel ranks?',
        default: true,
      });
      megatronConfig[`${p}gradient_clipping`] = await ask.number({
        id: `${p}gradient_clipping`,
        message: 'What is the gradient clipping value based on global L2 Norm (0 to disable)?',
        default: 1.0,
        integer: false,
      });
    }
  }

  // ---- processes and devices --------------------------------------------------------------
  if ([...MULTI_ANY, 'XLA'].includes(distributedType)) {
    const kind = distributedType.replace('MULTI_', '');
    const what = kind === 'XLA' ? 'TPU cores' : kind === 'NEURON' ? 'NEURON cores' : kind === 'CPU' ? 'processes' : `${kind}(s)`;
    numProcesses = await ask.number({ id: 'num_processes', message: `How many ${what} should be used for distributed training?`, default: 1, min: 1 });
  } else if (['FSDP', 'DEEPSPEED', 'MEGATRON_LM'].includes(distributedType)) {
    numProcesses = await ask.number({ id: 'num_processes', message: 'How many GPU(s) should be used for distributed training?', default: 1, min: 1 });
  }
  if (distributedType === 'MULTI_GPU' && numMachines === 1 && numProcesses === 1) {
    throw new CliError(
      'Specified distributed type MULTI_GPU but only using 1 GPU on a single machine. Please select `No distributed training` for the type of machine you are using.',
    );
  }
  if ([...MULTI_DEVICE, 'NO'].includes(distributedType) && !useCpu) {
    gpuIds = await ask.input({
      id: 'gpu_ids',
      message: 'What device(s) (by id) should be used for training on this machine as a comma-separated list?',
      default: 'all',
    });
  }
  let enableCpuAffinity = false;
  if ((distributedType === 'NO' || distributedType === 'MULTI_GPU') && !useCpu) {
    enableCpuAffinity = await ask.confirm({
      id: 'enable_cpu_affinity',
      message: 'Would you like to enable numa efficiency? (Currently only supported on NVIDIA hardware).',
      default: false,
    });
  }

  // ---- TPU or precision ------------------------------------------------------------------
  let mixedPrecision: string | null;
  let mainTrainingFunction = 'main';
  let fp8Config: Record<string, unknown> | null = null;
  const tpu = {
    commands: null as string[] | null,
    command_file: null as string | null,
    tpu_env: [] as string[],
    tpu_name: null as string | null,
    tpu_vm: null as string[] | null,
    tpu_zone: null as string | null,
    tpu_use_sudo: false,
    tpu_use_cluster: false,
  };
  if (distributedType === 'XLA') {
    mixedPrecision = 'no';
    mainTrainingFunction = await ask.input({
      id: 'main_training_function',
      message: 'What is the name of the function in your script that should be launched in all parallel scripts?',
      default: 'main',
    });
    tpu.tpu_use_cluster = await ask.confirm({ id: 'tpu_use_cluster', message: 'Are you using a TPU cluster?', default: false });
    if (tpu.tpu_use_cluster) {
      tpu.tpu_name = await ask.input({ id: 'tpu_name', message: 'What is the name of your TPU cluster?', required: true });
      tpu.tpu_zone = await ask.input({ id: 'tpu_zone', message: 'What is the zone of your TPU cluster?', required: true });
      tpu.tpu_use_sudo = await ask.confirm({ id: 'tpu_use_sudo', message: 'To run a python script in a TPU pod, should `sudo` be used?', default: false });
      if (await ask.confirm({ id: 'tpu_run_commands', message: 'Do you have code you wish to run on startup in each pod?', default: false })) {
        if (await ask.confirm({ id: 'tpu_use_command_file', message: 'Is this code located in a bash script?', default: false })) {
          tpu.command_file = await ask.input({ id: 'command_file', message: 'What is the path to your bash script?', required: true });
        } else {
          tpu.commands = [];
          let more = true;
          while (more) {
            tpu.commands.push(await ask.input({ id: 'command', message: 'Please enter a single command to be ran', required: true }));
            more = await ask.confirm({ id: 'another_command', message: 'Do you wish to add another command?', default: false });
          }
        }
      }
      tpu.tpu_vm = (
        await ask.input({
          id: 'tpu_vm',
          message: 'If not using an instance group, what are the names of the Compute VM instances to be used, separated by a comma:',
          default: '',
        })
      ).split(',');
      tpu.tpu_env = (
        await ask.input({ id: 'tpu_env', message: 'What environment variables do you wish to set in each pod, separated by a comma:', default: '' })
      ).split(',');
    }
  } else if (distributedType === 'DEEPSPEED' && useDeepspeedConfigFile) {
    mixedPrecision = null;
  } else {
    mixedPrecision = await ask.select({ id: 'mixed_precision', message: 'Do you wish to use mixed precision?', choices: choices(['no', 'fp16', 'bf16', 'fp8'] as const) });
    if (mixedPrecision === 'fp8') fp8Config = await askFp8(ask);
  }

  const raw: Record<string, unknown> = {
    compute_environment: 'LOCAL_MACHINE',
    distributed_type: distributedType,
    num_processes: numProcesses,
    gpu_ids: gpuIds,
    mixed_precision: mixedPrecision,
    downcast_bf16: 'no',
    machine_rank: machineRank,
    num_machines: numMachines,
    main_process_ip: mainProcessIp,
    main_process_port: mainProcessPort,
    main_training_function: mainTrainingFunction,
    fp8_config: fp8Config,
    deepspeed_config: deepspeedConfig,
    fsdp_config: fsdpConfig,
    parallelism_config: parallelismConfig,
    megatron_lm_config: megatronConfig,
    mpirun_config: mpirunConfig,
    use_cpu: useCpu,
    rdzv_backend: rdzvBackend,
    same_network: sameNetwork,
    ...tpu,
    dynamo_config: dynamoConfig,
    debug,
    enable_cpu_affinity: enableCpuAffinity,
  };
  return validateConfigDict(raw, 'the answers').config as ClusterConfigFile;
}

async function askFp8(ask: Prompter): Promise<Record<string, unknown>> {
  const fp8: Record<string, unknown> = {};
  const backend = await ask.select({ id: 'fp8_backend', message: 'Which FP8 backend do you want to use?', choices: choices(['AO', 'TE', 'MSAMP'] as const) });
  fp8.backend = backend;
  if (backend === 'TE') {
    fp8.use_autocast_during_eval = await ask.confirm({
      id: 'fp8_use_autocast_during_eval',
      message: 'Do you want to use FP8 autocast during eval mode? Generally better metrics are found when this is disabled',
      default: false,
    });
    fp8.margin = await ask.number({ id: 'fp8_margin', message: 'What margin should be used for gradient scaling?', default: 0 });
    fp8.interval = await ask.number({ id: 'fp8_interval', message: 'What interval should be used for how often the scaling factor is recomputed?', default: 1 });
    fp8.fp8_format = await ask.select({ id: 'fp8_format', message: 'Which weight format should be used?', choices: choices(['HYBRID', 'E4M3', 'E5M2'] as const), default: 'HYBRID' });
    // Key names as Python's questionnaire writes them (a known Accelerate quirk: the recipe reads *_len/*_algo).
    fp8.amax_history_length = await ask.number({
      id: 'fp8_amax_history_length',
      message: 'What length of history should be used for the amax scaling factor computation?',
      default: 1024,
    });
    fp8.amax_compute_algorithm = await ask.select({
      id: 'fp8_amax_compute_algorithm',
      message: 'Which algorithm should be used for the amax scaling factor computation?',
      choices: choices(['max', 'most_recent'] as const),
      default: 'max',
    });
    const override = await ask.confirm({
      id: 'fp8_override_linear_precision',
      message: 'Do you want to execute `fprop`, `dgrad`, and `wgrad` GEMMS in higher precision?',
      default: false,
    });
    fp8.override_linear_precision = override
      ? [
          await ask.confirm({ id: 'fp8_override_fprop', message: 'Should `fprop` be executed in higher precision?', default: false }),
          await ask.confirm({ id: 'fp8_override_dgrad', message: 'Should `dgrad` be executed in higher precision?', default: false }),
          await ask.confirm({ id: 'fp8_override_wgrad', message: 'Should `wgrad` be executed in higher precision?', default: false }),
        ]
      : [false, false, false];
  } else if (backend === 'MSAMP') {
    fp8.optimization_level = await ask.select({ id: 'fp8_optimization_level', message: 'Which optimization level should be used?', choices: choices(['O1', 'O2'] as const), default: 'O2' });
  } else {
    fp8.enable_fsdp_float8_all_gather = await ask.confirm({
      id: 'fp8_enable_fsdp_float8_all_gather',
      message: 'Do you want to enable FSDP2 float8 all gather? This is recommended for better performance if using FSDP2.',
      default: true,
    });
    fp8.pad_inner_dim = await ask.confirm({
      id: 'fp8_pad_inner_dim',
      message: 'Do you want to pad the inner dimension of weight matrices before float8 matmuls? (may cause memory spikes)',
      default: true,
    });
  }
  return fp8;
}
