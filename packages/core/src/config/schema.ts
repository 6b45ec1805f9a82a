/**
 * The declarative description of Accelerate's `default_config.yaml`.
 *
 * One table lists every key that Python Accelerate's `accelerate config`
 * writes (the fields of `ClusterConfig` / `SageMakerConfig` in
 * `accelerate/commands/config/config_args.py`, plus the sub-keys the
 * questionnaire and `accelerate launch` use inside the dict sections), with
 * its type, allowed values, the default Python fills in when the key is
 * absent, and a one-line description. Validation, defaults, the CLI and the
 * JSON Schema are all derived from it, so a file written by Python loads here
 * unchanged and the reverse.
 * @module
 */
import type { MixedPrecision } from '../interfaces/backend.js';
import { DistributedType } from '../state/distributed-type.js';
import { sectionFileFields } from './settings.js';

/**
 * Value types a config key can take.
 * - `boolish`: a boolean, or a string Accelerate's `str_to_bool` accepts
 *   (`"true"`, `"no"`, …); used inside the dict sections, where Python passes
 *   values through `str_to_bool` and hand-written files often quote them.
 * - `number`: Python `float` (written with a fraction, `1.0`).
 */
export type ConfigValueType =
  | 'string'
  | 'integer'
  | 'number'
  | 'boolean'
  | 'boolish'
  | 'string[]'
  | 'boolean[]'
  | 'object';

/** Description of one config key (top level or inside a dict section). */
export interface ConfigFieldSpec {
  /** Accepted type(s); the value must match at least one. */
  readonly type: ConfigValueType | readonly ConfigValueType[];
  /** Allowed string/number values (booleans are governed by `type`). */
  readonly enum?: readonly (string | number)[];
  /** Compare string values to `enum` ignoring case (Python upper-cases them). */
  readonly caseInsensitive?: boolean;
  /** `null` is accepted (Python `Optional[...]`). */
  readonly nullable?: boolean;
  /** The key must be present (Python raises when it is missing). */
  readonly required?: boolean;
  /** Value used when the key is absent (Python's dataclass default); `undefined` = stays absent. */
  readonly default?: unknown;
  /** One line saying what the key does. */
  readonly description: string;
  /** For `object` sections: the known sub-keys. */
  readonly properties?: Readonly<Record<string, ConfigFieldSpec>>;
  /**
   * For `object` sections: `accelerate launch` adds this prefix to sub-keys
   * that lack it (`fsdp_config.sharding_strategy` -> `--fsdp_sharding_strategy`),
   * so both spellings name the same sub-key.
   */
  readonly keyPrefix?: string;
  /** For `object` sections: any sub-key is accepted without a warning. */
  readonly openKeys?: boolean;
  /** Kept only so that older files load; `accelerate config` no longer writes it. */
  readonly legacy?: boolean;
}

/** `compute_environment` values. */
export const COMPUTE_ENVIRONMENTS = ['LOCAL_MACHINE', 'AMAZON_SAGEMAKER'] as const;
/** Where training runs: this machine/cluster, or Amazon SageMaker. */
export type ComputeEnvironment = (typeof COMPUTE_ENVIRONMENTS)[number];

/** Accelerate's `DistributedType` values, as written in `distributed_type`. */
export const DISTRIBUTED_TYPES: readonly DistributedType[] = Object.values(DistributedType);
/** A `distributed_type` of a local-machine config. */
export type ConfigDistributedType = DistributedType;

/** `distributed_type` values of a SageMaker config. */
export const SAGEMAKER_DISTRIBUTED_TYPES = ['NO', 'DATA_PARALLEL', 'MODEL_PARALLEL'] as const;
/** A `distributed_type` of a SageMaker config. */
export type SageMakerDistributedType = (typeof SAGEMAKER_DISTRIBUTED_TYPES)[number];

/** `mixed_precision` values. */
export const MIXED_PRECISIONS: readonly MixedPrecision[] = ['no', 'fp16', 'bf16', 'fp8'];

export {
  DEEPSPEED_MULTINODE_LAUNCHERS,
  DYNAMO_BACKENDS,
  DYNAMO_MODES,
  FSDP_AUTO_WRAP_POLICIES,
  FSDP_BACKWARD_PREFETCH,
  FSDP_SHARDING_STRATEGIES,
  FSDP_STATE_DICT_TYPES,
} from './settings.js';

// The plugin sections' keys come from the settings table (settings.ts): one row per setting.
const DEEPSPEED_CONFIG = sectionFileFields('deepspeed');
const FSDP_CONFIG = sectionFileFields('fsdp');
const FP8_CONFIG = sectionFileFields('fp8');
const MEGATRON_LM_CONFIG = sectionFileFields('megatron');
const PARALLELISM_CONFIG = sectionFileFields('parallelism');
const DYNAMO_CONFIG = sectionFileFields('dynamo');

const MPIRUN_CONFIG: Record<string, ConfigFieldSpec> = {
  mpirun_hostfile: { type: 'string', description: 'Hostfile passed to mpirun for multi-CPU training.' },
  // Python's questionnaire wrote the count as a string ('1'); both forms appear in real files.
  mpirun_ccl: { type: ['integer', 'string'], legacy: true, description: 'oneCCL worker count (older Accelerate versions).' },
};

const section = (
  description: string,
  properties: Record<string, ConfigFieldSpec>,
  extra: Partial<ConfigFieldSpec> = {},
): ConfigFieldSpec => ({ type: 'object', nullable: true, default: {}, description, properties, ...extra });

/** Keys every config has (Python's `BaseConfig`). */
const BASE_FIELDS: Record<string, ConfigFieldSpec> = {
  compute_environment: {
    type: 'string',
    enum: COMPUTE_ENVIRONMENTS,
    default: 'LOCAL_MACHINE',
    description: 'Where training runs: this machine/cluster or Amazon SageMaker.',
  },
  distributed_type: {
    type: 'string',
    enum: DISTRIBUTED_TYPES,
    required: true,
    description: 'Kind of distributed training (NO = one process).',
  },
  mixed_precision: {
    type: 'string',
    enum: MIXED_PRECISIONS,
    nullable: true,
    default: null,
    description: 'Mixed precision mode; null leaves it to the DeepSpeed config.',
  },
  use_cpu: { type: 'boolean', default: false, description: 'Train on CPU even when an accelerator is present.' },
  debug: { type: 'boolean', default: false, description: 'Check collectives across ranks for shape mismatches (slower).' },
};

/**
 * Keys of a `LOCAL_MACHINE` config (Python's `ClusterConfig`), in the order
 * Python declares them.
 */
export const CLUSTER_CONFIG_FIELDS: Readonly<Record<string, ConfigFieldSpec>> = {
  ...BASE_FIELDS,
  num_processes: { type: 'integer', default: -1, description: 'Total processes across all machines (-1 = give it at launch; 1 when distributed_type is NO).' },
  machine_rank: { type: 'integer', default: 0, description: 'Rank of this machine (0 for the main one).' },
  num_machines: { type: 'integer', default: 1, description: 'Number of machines.' },
  gpu_ids: { type: ['string', 'integer'], nullable: true, default: null, description: 'Comma-separated device ids this machine uses, or `all`.' },
  main_process_ip: { type: 'string', nullable: true, default: null, description: 'IP address of the machine hosting rank 0.' },
  main_process_port: { type: 'integer', nullable: true, default: null, description: 'Port of the main process (0 = pick a free port).' },
  rdzv_backend: { type: 'string', nullable: true, default: 'static', description: 'Rendezvous backend (static, c10d, …).' },
  same_network: { type: 'boolean', nullable: true, default: false, description: 'All machines share one local network.' },
  main_training_function: { type: 'string', default: 'main', description: 'Function launched on each TPU core.' },
  enable_cpu_affinity: { type: 'boolean', default: false, description: 'Pin each process to the CPU cores of its NUMA node.' },
  fp8_config: section('FP8 recipe settings (used when mixed_precision is fp8).', FP8_CONFIG, { keyPrefix: 'fp8_' }),
  deepspeed_config: section('DeepSpeed plugin settings (distributed_type DEEPSPEED).', DEEPSPEED_CONFIG),
  fsdp_config: section('FSDP plugin settings (distributed_type FSDP).', FSDP_CONFIG, { keyPrefix: 'fsdp_' }),
  parallelism_config: section('N-D parallelism sizes (FSDP2).', PARALLELISM_CONFIG),
  megatron_lm_config: section('Megatron-LM plugin settings (distributed_type MEGATRON_LM).', MEGATRON_LM_CONFIG),
  mpirun_config: section('mpirun settings for multi-CPU training.', MPIRUN_CONFIG),
  downcast_bf16: {
    type: ['boolean', 'string'],
    default: false,
    description: 'On TPU with bf16: also cast float64 to bf16 (the questionnaire writes "no"/"yes").',
  },
  tpu_name: { type: 'string', nullable: true, default: null, description: 'Name of the TPU pod.' },
  tpu_zone: { type: 'string', nullable: true, default: null, description: 'Zone of the TPU pod.' },
  tpu_use_cluster: { type: 'boolean', default: false, description: 'Run on a TPU pod.' },
  tpu_use_sudo: { type: ['boolean', 'string'], default: false, description: 'Use sudo when running in a TPU pod.' },
  command_file: { type: 'string', nullable: true, default: null, description: 'Shell script run on each TPU pod worker at start.' },
  commands: { type: 'string[]', nullable: true, default: null, description: 'Commands run on each TPU pod worker at start.' },
  tpu_vm: { type: 'string[]', nullable: true, default: null, description: 'TPU VM instance names.' },
  tpu_env: { type: 'string[]', nullable: true, default: null, description: 'Environment variables set in each TPU pod.' },
  dynamo_config: section('torch.compile settings.', DYNAMO_CONFIG, { keyPrefix: 'dynamo_' }),
};

/** Keys of an `AMAZON_SAGEMAKER` config (Python's `SageMakerConfig`). */
export const SAGEMAKER_CONFIG_FIELDS: Readonly<Record<string, ConfigFieldSpec>> = {
  ...BASE_FIELDS,
  distributed_type: {
    type: 'string',
    enum: SAGEMAKER_DISTRIBUTED_TYPES,
    required: true,
    description: 'SageMaker distribution: NO, DATA_PARALLEL or MODEL_PARALLEL.',
  },
  ec2_instance_type: { type: 'string', required: true, description: 'EC2 instance type, e.g. ml.p3.2xlarge.' },
  iam_role_name: { type: 'string', required: true, description: 'IAM role SageMaker runs as.' },
  image_uri: { type: 'string', nullable: true, default: null, description: 'Custom Docker image.' },
  profile: { type: 'string', nullable: true, default: null, description: 'AWS profile.' },
  region: { type: 'string', default: 'us-east-1', description: 'AWS region.' },
  num_machines: { type: 'integer', default: 1, description: 'Number of instances.' },
  gpu_ids: { type: ['string', 'integer'], default: 'all', description: 'Device ids to use.' },
  base_job_name: { type: 'string', default: 'accelerate-sagemaker-1', description: 'Training job name prefix.' },
  pytorch_version: { type: 'string', default: '1.10.2', description: 'PyTorch version of the SageMaker image.' },
  transformers_version: { type: 'string', default: '4.17.0', description: 'Transformers version of the SageMaker image.' },
  py_version: { type: 'string', default: 'py38', description: 'Python version of the SageMaker image.' },
  sagemaker_inputs_file: { type: 'string', nullable: true, default: null, description: 'TSV file of training input channels.' },
  sagemaker_metrics_file: { type: 'string', nullable: true, default: null, description: 'TSV file of metric definitions.' },
  additional_args: { type: 'object', nullable: true, default: null, openKeys: true, description: 'Extra arguments for the SageMaker estimator.' },
  dynamo_config: section('torch.compile settings.', DYNAMO_CONFIG, { keyPrefix: 'dynamo_' }),
  enable_cpu_affinity: { type: 'boolean', default: false, description: 'Pin processes to NUMA-local CPU cores.' },
};

/** The key table for a compute environment. */
export function configFieldsFor(env: ComputeEnvironment): Readonly<Record<string, ConfigFieldSpec>> {
  return env === 'AMAZON_SAGEMAKER' ? SAGEMAKER_CONFIG_FIELDS : CLUSTER_CONFIG_FIELDS;
}

/**
 * Finds the spec of a sub-key of a dict section, honouring the section's
 * prefix rule (`fsdp_config.sharding_strategy` == `fsdp_sharding_strategy`).
 * Returns the canonical sub-key name and its spec, or undefined.
 */
export function lookupSectionKey(
  sectionSpec: ConfigFieldSpec,
  key: string,
): { name: string; spec: ConfigFieldSpec } | undefined {
  const props = sectionSpec.properties ?? {};
  if (Object.hasOwn(props, key)) return { name: key, spec: props[key] };
  const prefix = sectionSpec.keyPrefix;
  if (prefix) {
    if (key.startsWith(prefix)) {
      const bare = key.slice(prefix.length);
      if (Object.hasOwn(props, bare)) return { name: bare, spec: props[bare] };
    } else if (Object.hasOwn(props, prefix + key)) {
      return { name: prefix + key, spec: props[prefix + key] };
    }
  }
  return undefined;
}

/** A local-machine config as stored in `default_config.yaml` (Python's snake_case keys). */
export interface ClusterConfigFile {
  compute_environment: 'LOCAL_MACHINE';
  distributed_type: ConfigDistributedType;
  mixed_precision: MixedPrecision | null;
  use_cpu: boolean;
  debug: boolean;
  num_processes: number;
  machine_rank: number;
  num_machines: number;
  gpu_ids: string | number | null;
  main_process_ip: string | null;
  main_process_port: number | null;
  rdzv_backend: string | null;
  same_network: boolean | null;
  main_training_function: string;
  enable_cpu_affinity: boolean;
  fp8_config: ConfigSection;
  deepspeed_config: ConfigSection;
  fsdp_config: ConfigSection;
  parallelism_config: ConfigSection;
  megatron_lm_config: ConfigSection;
  mpirun_config: ConfigSection;
  downcast_bf16: boolean | string;
  tpu_name: string | null;
  tpu_zone: string | null;
  tpu_use_cluster: boolean;
  tpu_use_sudo: boolean | string;
  command_file: string | null;
  commands: string[] | null;
  tpu_vm: string[] | null;
  tpu_env: string[] | null;
  dynamo_config: ConfigSection;
}

/** A SageMaker config as stored in `default_config.yaml`. */
export interface SageMakerConfigFile {
  compute_environment: 'AMAZON_SAGEMAKER';
  distributed_type: SageMakerDistributedType;
  mixed_precision: MixedPrecision | null;
  use_cpu: boolean;
  debug: boolean;
  ec2_instance_type: string;
  iam_role_name: string;
  image_uri: string | null;
  profile: string | null;
  region: string;
  num_machines: number;
  gpu_ids: string | number;
  base_job_name: string;
  pytorch_version: string;
  transformers_version: string;
  py_version: string;
  sagemaker_inputs_file: string | null;
  sagemaker_metrics_file: string | null;
  additional_args: ConfigSection | null;
  dynamo_config: ConfigSection;
  enable_cpu_affinity: boolean;
}

/** One dict section (`fsdp_config`, …): sub-key -> value. */
export type ConfigSection = Record<string, unknown>;

/** Any Accelerate config file's content, with Python's defaults filled in. */
export type AccelerateConfigFile = ClusterConfigFile | SageMakerConfigFile;

// ---- JSON Schema ------------------------------------------------------------

/** A JSON Schema document (draft-07). */
export type JsonSchema = Record<string, unknown>;

function typeToJson(t: ConfigValueType): JsonSchema[] {
  switch (t) {
    case 'string':
      return [{ type: 'string' }];
    case 'integer':
      return [{ type: 'integer' }];
    case 'number':
      return [{ type: 'number' }];
    case 'boolean':
      return [{ type: 'boolean' }];
    case 'boolish':
      return [
        { type: 'boolean' },
        { type: 'string', enum: [...BOOL_STRINGS_FOR_SCHEMA] },
      ];
    case 'string[]':
      return [{ type: 'array', items: { type: 'string' } }];
    case 'boolean[]':
      return [{ type: 'array', items: { type: 'boolean' } }];
    case 'object':
      return [{ type: 'object' }];
  }
}

// str_to_bool accepts any case; the schema lists the common spellings.
const BOOL_STRINGS_FOR_SCHEMA = ['y', 'yes', 't', 'true', 'on', '1', 'n', 'no', 'f', 'false', 'off', '0', 'True', 'False'];

function fieldToJson(spec: ConfigFieldSpec): JsonSchema {
  const types = typeof spec.type === 'string' ? [spec.type] : spec.type;
  const alternatives: JsonSchema[] = [];
  for (const t of types) {
    for (const alt of typeToJson(t)) {
      if (t === 'object' && spec.properties) {
        const props: Record<string, JsonSchema> = {};
        for (const [k, sub] of Object.entries(spec.properties)) props[k] = fieldToJson(sub);
        alt.properties = props;
        // Python passes unknown sub-keys through; we only warn about them.
        alt.additionalProperties = true;
      }
      if (spec.enum && (t === 'string' || t === 'integer')) {
        const wanted = spec.enum.filter((v) => (t === 'string' ? typeof v === 'string' : typeof v === 'number'));
        if (wanted.length > 0) {
          alt.enum =
            t === 'string' && spec.caseInsensitive
              ? [...new Set(wanted.flatMap((v) => [v, String(v).toLowerCase()]))]
              : [...wanted];
        }
      }
      alternatives.push(alt);
    }
  }
  if (spec.nullable) alternatives.push({ type: 'null' });
  const out: JsonSchema = alternatives.length === 1 ? alternatives[0] : { anyOf: alternatives };
  out.description = spec.description + (spec.legacy ? ' (legacy key)' : '');
  if (spec.default !== undefined) out.default = spec.default;
  return out;
}

function objectSchema(fields: Readonly<Record<string, ConfigFieldSpec>>, extraRequired: string[] = []): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [...extraRequired];
  for (const [k, spec] of Object.entries(fields)) {
    properties[k] = fieldToJson(spec);
    if (spec.required) required.push(k);
  }
  // Legacy keys that the loader converts (fp16, dynamo_backend) are accepted too.
  properties.fp16 = { type: 'boolean', description: 'Legacy: true means mixed_precision fp16.' };
  properties.dynamo_backend = { type: 'string', description: 'Legacy: moved into dynamo_config.dynamo_backend.' };
  return { type: 'object', properties, required, additionalProperties: false };
}

/**
 * The config file format as a JSON Schema (draft-07), for editors and other
 * tools. Local-machine and SageMaker configs are told apart by
 * `compute_environment`, as Python does.
 */
export function toJsonSchema(): JsonSchema {
  const sagemaker = objectSchema(SAGEMAKER_CONFIG_FIELDS, ['compute_environment']);
  (sagemaker.properties as Record<string, JsonSchema>).compute_environment = {
    const: 'AMAZON_SAGEMAKER',
    description: 'Amazon SageMaker.',
  };
  const cluster = objectSchema(CLUSTER_CONFIG_FIELDS);
  (cluster.properties as Record<string, JsonSchema>).compute_environment = {
    const: 'LOCAL_MACHINE',
    default: 'LOCAL_MACHINE',
    description: 'This machine or a cluster of machines.',
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'Accelerate default_config.yaml',
    description:
      'Configuration written by `accelerate config` (Python Accelerate and accelerate-ts share the format).',
    type: 'object',
    if: {
      properties: { compute_environment: { const: 'AMAZON_SAGEMAKER' } },
      required: ['compute_environment'],
    },
    then: sagemaker,
    else: cluster,
  };
}
