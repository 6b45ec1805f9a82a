import { describe, expect, it } from 'vitest';
import {
  CLUSTER_CONFIG_FIELDS,
  DISTRIBUTED_TYPES,
  SAGEMAKER_CONFIG_FIELDS,
  lookupSectionKey,
  toJsonSchema,
} from '../../src/config/schema.js';

// Field names of Python's dataclasses in accelerate/commands/config/config_args.py (v1.15.0.dev0).
const PY_BASE = ['compute_environment', 'distributed_type', 'mixed_precision', 'use_cpu', 'debug'];
const PY_CLUSTER = [
  ...PY_BASE,
  'num_processes', 'machine_rank', 'num_machines', 'gpu_ids', 'main_process_ip', 'main_process_port',
  'rdzv_backend', 'same_network', 'main_training_function', 'enable_cpu_affinity', 'fp8_config',
  'deepspeed_config', 'fsdp_config', 'parallelism_config', 'megatron_lm_config', 'mpirun_config',
  'downcast_bf16', 'tpu_name', 'tpu_zone', 'tpu_use_cluster', 'tpu_use_sudo', 'command_file', 'commands',
  'tpu_vm', 'tpu_env', 'dynamo_config',
];
const PY_SAGEMAKER = [
  ...PY_BASE,
  'ec2_instance_type', 'iam_role_name', 'image_uri', 'profile', 'region', 'num_machines', 'gpu_ids',
  'base_job_name', 'pytorch_version', 'transformers_version', 'py_version', 'sagemaker_inputs_file',
  'sagemaker_metrics_file', 'additional_args', 'dynamo_config', 'enable_cpu_affinity',
];

describe('config schema', () => {
  it('has exactly the keys of Python ClusterConfig and SageMakerConfig', () => {
    expect(Object.keys(CLUSTER_CONFIG_FIELDS).sort()).toEqual([...PY_CLUSTER].sort());
    expect(Object.keys(SAGEMAKER_CONFIG_FIELDS).sort()).toEqual([...new Set(PY_SAGEMAKER)].sort());
  });

  it('every key has a description and a default or is required', () => {
    for (const [k, spec] of [...Object.entries(CLUSTER_CONFIG_FIELDS), ...Object.entries(SAGEMAKER_CONFIG_FIELDS)]) {
      expect(spec.description.length, k).toBeGreaterThan(5);
      expect(spec.required === true || spec.default !== undefined, k).toBe(true);
    }
  });

  it('section sub-keys resolve with and without the launch prefix', () => {
    const fsdp = CLUSTER_CONFIG_FIELDS.fsdp_config;
    expect(lookupSectionKey(fsdp, 'fsdp_version')?.name).toBe('fsdp_version');
    expect(lookupSectionKey(fsdp, 'version')?.name).toBe('fsdp_version');
    const fp8 = CLUSTER_CONFIG_FIELDS.fp8_config;
    expect(lookupSectionKey(fp8, 'fp8_backend')?.name).toBe('backend');
    expect(lookupSectionKey(fp8, 'format')?.name).toBe('fp8_format');
    expect(lookupSectionKey(CLUSTER_CONFIG_FIELDS.deepspeed_config, 'zero')).toBeUndefined();
  });

  describe('toJsonSchema', () => {
    const schema = toJsonSchema() as Record<string, any>;

    it('is a draft-07 schema choosing SageMaker or local by compute_environment', () => {
      expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
      expect(schema.if).toEqual({
        properties: { compute_environment: { const: 'AMAZON_SAGEMAKER' } },
        required: ['compute_environment'],
      });
      expect(schema.then.required).toEqual(['compute_environment', 'distributed_type', 'ec2_instance_type', 'iam_role_name']);
      expect(schema.else.required).toEqual(['distributed_type']);
      expect(schema.else.additionalProperties).toBe(false);
    });

    it('lists every local key (plus the legacy fp16/dynamo_backend) with types and enums', () => {
      const props = schema.else.properties;
      expect(Object.keys(props).sort()).toEqual([...PY_CLUSTER, 'fp16', 'dynamo_backend'].sort());
      expect(props.distributed_type.enum).toEqual([...DISTRIBUTED_TYPES]);
      expect(props.mixed_precision.anyOf).toEqual([{ type: 'string', enum: ['no', 'fp16', 'bf16', 'fp8'] }, { type: 'null' }]);
      expect(props.num_processes).toMatchObject({ type: 'integer', default: -1 });
      expect(props.tpu_env.anyOf).toEqual([{ type: 'array', items: { type: 'string' } }, { type: 'null' }]);
      const fsdp = props.fsdp_config.anyOf[0];
      expect(fsdp.additionalProperties).toBe(true);
      expect(fsdp.properties.fsdp_version).toMatchObject({ type: 'integer', enum: [1, 2], default: 1 });
    });

    it('is plain JSON', () => {
      expect(JSON.parse(JSON.stringify(schema))).toEqual(schema);
    });
  });
});
