/**
 * Cross-checks against Python Accelerate itself, when a Python with
 * `accelerate` is available (`ACCELERATE_TS_PYTHON=/path/to/python`, else
 * `python3`). Skipped, with the reason printed, otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { basicConfig, configToDict, loadConfigFile, saveConfigFile } from '../../src/config/file.js';
import { toJsonSchema } from '../../src/config/schema.js';

const python = process.env.ACCELERATE_TS_PYTHON || 'python3';
const probe = spawnSync(python, ['-c', 'import accelerate, sys; sys.stdout.write(accelerate.__version__)'], {
  encoding: 'utf8',
  timeout: 60_000,
});
const available = probe.status === 0;
if (!available) {
  console.log(
    `[config python-interop] skipped: no Python with accelerate (${python}: ${
      (probe.error?.message ?? probe.stderr ?? '').trim().split('\n').pop()
    }); set ACCELERATE_TS_PYTHON to a python that has it`,
  );
}

const FIXTURES = join(import.meta.dirname, 'fixtures');
const FIXTURE_NAMES = ['multi_cpu.yaml', 'no_cpu.yaml', 'fsdp1_multinode.yaml', 'fsdp2.yaml', 'deepspeed_fp8.yaml'];

// Builds each fixture with the arguments `accelerate config`'s questionnaire
// (commands/config/cluster.py) passes to ClusterConfig for those answers, and
// writes it with Python's own writer.
const WRITE_FIXTURES_PY = String.raw`
import sys
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils import ComputeEnvironment, DistributedType
out = sys.argv[1]
def cluster(**kw):
    base = dict(compute_environment=ComputeEnvironment.LOCAL_MACHINE, num_processes=1, gpu_ids=None, mixed_precision="no",
        downcast_bf16="no", machine_rank=0, num_machines=1, main_process_ip=None, main_process_port=None,
        main_training_function="main", fp8_config=None, deepspeed_config={}, fsdp_config={}, parallelism_config={},
        megatron_lm_config={}, mpirun_config={}, use_cpu=False, rdzv_backend="static", same_network=True, commands=None,
        command_file=None, tpu_env=[], tpu_name=None, tpu_vm=None, tpu_zone=None, tpu_use_sudo=False,
        tpu_use_cluster=False, dynamo_config={}, debug=False, enable_cpu_affinity=False)
    base.update(kw)
    return ClusterConfig(**base)
cluster(distributed_type=DistributedType.MULTI_CPU, num_processes=4, use_cpu=True).to_yaml_file(out + "/multi_cpu.yaml")
cluster(distributed_type=DistributedType.NO, use_cpu=True).to_yaml_file(out + "/no_cpu.yaml")
cluster(distributed_type=DistributedType.FSDP, num_processes=2, gpu_ids="all", mixed_precision="bf16", fsdp_config={
    "fsdp_version": 2, "fsdp_reshard_after_forward": True, "fsdp_offload_params": False,
    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_transformer_layer_cls_to_wrap": "BertLayer",
    "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_cpu_ram_efficient_loading": True,
    "fsdp_activation_checkpointing": False}).to_yaml_file(out + "/fsdp2.yaml")
cluster(distributed_type=DistributedType.FSDP, num_processes=8, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1",
    main_process_port=29500, gpu_ids="0,1,2,3", mixed_precision="fp16", fsdp_config={
    "fsdp_version": 1, "fsdp_reshard_after_forward": "FULL_SHARD", "fsdp_offload_params": True,
    "fsdp_auto_wrap_policy": "SIZE_BASED_WRAP", "fsdp_min_num_params": 100000000, "fsdp_backward_prefetch": "BACKWARD_PRE",
    "fsdp_state_dict_type": "FULL_STATE_DICT", "fsdp_forward_prefetch": False, "fsdp_use_orig_params": True,
    "fsdp_cpu_ram_efficient_loading": True, "fsdp_sync_module_states": True, "fsdp_activation_checkpointing": False},
    dynamo_config={"dynamo_backend": "INDUCTOR", "dynamo_mode": "default", "dynamo_use_fullgraph": False,
    "dynamo_use_dynamic": False, "dynamo_use_regional_compilation": False}).to_yaml_file(out + "/fsdp1_multinode.yaml")
cluster(distributed_type=DistributedType.DEEPSPEED, num_processes=2, gpu_ids="all", mixed_precision="fp8",
    fp8_config={"backend": "TE", "use_autocast_during_eval": False, "margin": 0, "interval": 1, "fp8_format": "HYBRID",
    "amax_history_length": 1024, "amax_compute_algorithm": "max", "override_linear_precision": (False, False, False)},
    deepspeed_config={"zero_stage": 3, "offload_optimizer_device": "none", "offload_param_device": "nvme",
    "offload_param_nvme_path": "/nvme", "gradient_accumulation_steps": 4, "gradient_clipping": 1.0,
    "zero3_save_16bit_model": True, "zero3_init_flag": False}).to_yaml_file(out + "/deepspeed_fp8.yaml")
`;

// Loads each given file with Python's loader and prints {file: to_dict()}.
const READ_PY = String.raw`
import json, sys
from accelerate.commands.config.config_args import load_config_from_file
print(json.dumps({f: load_config_from_file(f).to_dict() for f in sys.argv[1:]}))
`;

// Validates files (PyYAML-parsed) against a JSON Schema; prints {file: [messages]}.
const JSONSCHEMA_PY = String.raw`
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
v = jsonschema.Draft7Validator(schema)
print(json.dumps({f: [e.message for e in v.iter_errors(yaml.safe_load(open(f)))] for f in sys.argv[2:]}))
`;
const hasJsonschema =
  available && spawnSync(python, ['-c', 'import jsonschema'], { encoding: 'utf8', timeout: 60_000 }).status === 0;

function run(args: string[]): string {
  const r = spawnSync(python, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${python} ${args.slice(0, 2).join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

describe.skipIf(!available)('interop with Python Accelerate', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'acc-pyinterop-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('our hand-written fixtures are byte-identical to what Python writes for the same answers', () => {
    run(['-c', WRITE_FIXTURES_PY, dir]);
    for (const name of FIXTURE_NAMES) {
      expect(readFileSync(join(dir, name), 'utf8'), name).toBe(readFileSync(join(FIXTURES, name), 'utf8'));
    }
  });

  it('`accelerate config default` output loads here and equals our basic config', () => {
    const target = join(dir, 'py_default.yaml');
    run(['-m', 'accelerate.commands.accelerate_cli', 'config', 'default', '--config_file', target]);
    const loaded = loadConfigFile(target);
    // Python writes JSON text into the .yaml path; on a machine with accelerators it would differ from CPU.
    if (loaded.config.use_cpu) expect(loaded.config).toEqual(basicConfig('no'));
    expect(loaded.config.distributed_type).toBeDefined();
  });

  it('files we write are read by Python with the same values', () => {
    const files: string[] = [];
    const expected: Record<string, unknown> = {};
    for (const name of FIXTURE_NAMES) {
      const loaded = loadConfigFile(join(FIXTURES, name));
      for (const ext of ['yaml', 'json']) {
        const out = join(dir, `ts_${name}.${ext}`);
        saveConfigFile(loaded.config as unknown as Record<string, unknown>, out);
        files.push(out);
        expected[out] = configToDict(loaded.config as unknown as Record<string, unknown>);
      }
    }
    const legacy = join(dir, 'legacy.yaml');
    writeFileSync(legacy, readFileSync(join(FIXTURES, 'legacy_v0.yaml')));
    files.push(legacy);
    expected[legacy] = configToDict(loadConfigFile(legacy).config as unknown as Record<string, unknown>);
    const python = JSON.parse(run(['-c', READ_PY, ...files])) as Record<string, Record<string, unknown>>;
    for (const f of files) {
      expect(python[f], f).toEqual(expected[f]);
    }
  });

  it.skipIf(!hasJsonschema)('the JSON Schema is valid draft-07 and accepts every Python-written file, rejecting bad ones', () => {
    const schemaPath = join(dir, 'schema.json');
    writeFileSync(schemaPath, JSON.stringify(toJsonSchema()));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, "distributed_type: 'NO'\nmixed_precison: fp16\n");
    const files = [...FIXTURE_NAMES, 'legacy_v0.yaml', 'python_config_default.yaml'].map((n) => join(FIXTURES, n));
    const result = JSON.parse(run(['-c', JSONSCHEMA_PY, schemaPath, ...files, bad])) as Record<string, string[]>;
    for (const f of files) expect(result[f], f).toEqual([]);
    expect(result[bad]).toEqual(["Additional properties are not allowed ('mixed_precison' was unexpected)"]);
  });
});
