import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  basicConfig,
  configToDict,
  defaultConfigPath,
  findDefaultConfigFile,
  hfHome,
  loadConfigFile,
  saveConfigFile,
  serializeConfig,
  writeBasicConfig,
} from '../../src/config/file.js';
import { ConfigError } from '../../src/config/errors.js';
import { validateConfigDict } from '../../src/config/validate.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const fixture = (name: string) => join(FIXTURES, name);
const read = (p: string) => readFileSync(p, 'utf8');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'acc-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeTmp(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('config file location', () => {
  it('uses $HF_HOME when set, expanding ~', () => {
    expect(defaultConfigPath({ HF_HOME: '/data/hf' })).toBe('/data/hf/accelerate/default_config.yaml');
    expect(hfHome({ HF_HOME: '~/hf' })).toBe(join(homedir(), 'hf'));
  });
  it('falls back to $XDG_CACHE_HOME/huggingface, then ~/.cache/huggingface', () => {
    expect(defaultConfigPath({ XDG_CACHE_HOME: '/xdg' })).toBe('/xdg/huggingface/accelerate/default_config.yaml');
    expect(defaultConfigPath({})).toBe(join(homedir(), '.cache/huggingface/accelerate/default_config.yaml'));
  });
  it('finds the default file only when it exists', () => {
    expect(findDefaultConfigFile({ HF_HOME: dir })).toBeNull();
    writeBasicConfig({ env: { HF_HOME: dir } });
    expect(findDefaultConfigFile({ HF_HOME: dir })).toBe(join(dir, 'accelerate/default_config.yaml'));
  });
});

describe('files written by Python `accelerate config` load unchanged and round-trip', () => {
  const cases = ['multi_cpu.yaml', 'no_cpu.yaml', 'fsdp1_multinode.yaml', 'fsdp2.yaml', 'deepspeed_fp8.yaml'];
  for (const name of cases) {
    it(`${name}: every key keeps its value, and saving writes the same bytes`, () => {
      const loaded = loadConfigFile(fixture(name));
      const original = parseYaml(read(fixture(name)), { version: '1.1' }) as Record<string, unknown>;
      expect(loaded.warnings).toEqual([]);
      expect(loaded.format).toBe('yaml');
      for (const [k, v] of Object.entries(original)) {
        expect((loaded.config as unknown as Record<string, unknown>)[k], k).toEqual(v);
      }
      expect([...loaded.present].sort()).toEqual(Object.keys(original).sort());
      const out = join(dir, name);
      saveConfigFile(loaded.config as unknown as Record<string, unknown>, out);
      expect(read(out)).toBe(read(fixture(name)));
    });
  }

  it('the MULTI_CPU file has the values the questionnaire wrote', () => {
    const { config } = loadConfigFile(fixture('multi_cpu.yaml'));
    expect(config).toMatchObject({
      distributed_type: 'MULTI_CPU',
      num_processes: 4,
      use_cpu: true,
      mixed_precision: 'no',
      downcast_bf16: 'no',
      same_network: true,
      rdzv_backend: 'static',
      tpu_env: [],
      gpu_ids: null,
      main_process_ip: null,
      fsdp_config: {},
      dynamo_config: {},
    });
  });

  it('Python `accelerate config default` output (JSON text in a .yaml file) loads, and we write the same JSON', () => {
    const loaded = loadConfigFile(fixture('python_config_default.yaml'));
    expect(loaded.config).toMatchObject({ distributed_type: 'NO', use_cpu: true, num_processes: 1, downcast_bf16: false });
    const out = join(dir, 'default.json');
    saveConfigFile(basicConfig('no') as unknown as Record<string, unknown>, out);
    expect(read(out)).toBe(read(fixture('python_config_default.yaml')));
  });

  it('writes float-typed keys with a fraction, as Python does (gradient_clipping: 1.0)', () => {
    const text = serializeConfig({ distributed_type: 'DEEPSPEED', deepspeed_config: { gradient_clipping: 1, zero_stage: 2 } }, 'yaml');
    expect(text).toBe('deepspeed_config:\n  gradient_clipping: 1.0\n  zero_stage: 2\ndistributed_type: DEEPSPEED\n');
    const json = serializeConfig({ distributed_type: 'DEEPSPEED', deepspeed_config: { gradient_clipping: 1, zero_stage: 2 } }, 'json');
    expect(json).toBe('{\n  "deepspeed_config": {\n    "gradient_clipping": 1.0,\n    "zero_stage": 2\n  },\n  "distributed_type": "DEEPSPEED"\n}\n');
  });

  it('drops nulls and empty sections like Python to_dict()', () => {
    expect(configToDict({ b: null, a: {}, c: { z: 1, y: null }, d: [] })).toEqual({ c: { y: null, z: 1 }, d: [] });
  });
});

describe('defaults and legacy conversions', () => {
  it('fills Python dataclass defaults; NO without num_processes runs 1 process', () => {
    const p = writeTmp('min.yaml', 'distributed_type: NO\n');
    const { config, present } = loadConfigFile(p);
    expect([...present]).toEqual(['distributed_type']);
    expect(config).toMatchObject({
      compute_environment: 'LOCAL_MACHINE',
      distributed_type: 'NO',
      num_processes: 1,
      mixed_precision: null,
      use_cpu: false,
      debug: false,
      enable_cpu_affinity: false,
      machine_rank: 0,
      num_machines: 1,
      rdzv_backend: 'static',
      same_network: false,
      main_training_function: 'main',
      downcast_bf16: false,
    });
  });

  it('num_processes defaults to -1 (give it at launch) for multi-process types', () => {
    const p = writeTmp('gpu.yaml', 'distributed_type: MULTI_GPU\n');
    expect(loadConfigFile(p).config).toMatchObject({ num_processes: -1 });
  });

  it('converts fp16: true and dynamo_backend from old files, with warnings', () => {
    const loaded = loadConfigFile(fixture('legacy_v0.yaml'));
    expect(loaded.config).toMatchObject({
      mixed_precision: 'fp16',
      dynamo_config: { dynamo_backend: 'INDUCTOR' },
      main_process_ip: null,
      deepspeed_config: {},
    });
    expect(loaded.config).not.toHaveProperty('fp16');
    expect(loaded.config).not.toHaveProperty('dynamo_backend');
    expect(loaded.warnings).toEqual([
      'legacy key "fp16: true" read as "mixed_precision: fp16" (run `accelerate config update` to rewrite the file)',
      'legacy key "dynamo_backend: "INDUCTOR"" moved to "dynamo_config" (run `accelerate config update` to rewrite the file)',
    ]);
    // Rewriting keeps the meaning and drops the legacy keys.
    const out = saveConfigFile(loaded.config as unknown as Record<string, unknown>, join(dir, 'new.yaml'));
    const again = loadConfigFile(out);
    expect(again.warnings).toEqual([]);
    expect(again.config).toEqual(loaded.config);
  });

  it('ignores the ipex_config of pre-1.0 files with a warning (Python 1.x rejects the file)', () => {
    const p = writeTmp('ipex.yaml', 'distributed_type: MULTI_CPU\nnum_processes: 2\nipex_config:\n  ipex: false\nuse_cpu: true\n');
    const loaded = loadConfigFile(p);
    expect(loaded.config).toMatchObject({ distributed_type: 'MULTI_CPU', num_processes: 2, use_cpu: true });
    expect(loaded.config).not.toHaveProperty('ipex_config');
    expect(loaded.warnings).toEqual([expect.stringMatching(/^legacy key "ipex_config" ignored: .*accelerate config update/)]);
  });

  it("reads mpirun_config as Python's questionnaire wrote it (mpirun_ccl as a quoted string) and as an integer", () => {
    for (const ccl of ["'1'", '1']) {
      const p = writeTmp(`mpirun-${ccl.length}.yaml`, `distributed_type: MULTI_CPU\nnum_processes: 2\nmpirun_config:\n  mpirun_ccl: ${ccl}\n  mpirun_hostfile: null\n`);
      expect(loadConfigFile(p).config).toMatchObject({ distributed_type: 'MULTI_CPU', mpirun_config: { mpirun_ccl: ccl === '1' ? 1 : '1' } });
    }
  });

  it('dynamo_backend: NO becomes an empty dynamo_config; fp16: false means no precision set', () => {
    const { config } = validateConfigDict({ distributed_type: 'NO', dynamo_backend: 'NO', fp16: false }, 'x');
    expect(config.dynamo_config).toEqual({});
    expect(config.mixed_precision).toBeNull();
  });

  it('reads YAML 1.1 as PyYAML does (yes/off are booleans) and takes an unquoted NO/no to mean the string', () => {
    const p = writeTmp('y11.yaml', 'distributed_type: NO\nuse_cpu: yes\ndebug: off\nmixed_precision: no\ndynamo_config:\n  dynamo_backend: NO\n');
    expect(loadConfigFile(p).config).toMatchObject({
      distributed_type: 'NO',
      use_cpu: true,
      debug: false,
      mixed_precision: 'no',
      dynamo_config: { dynamo_backend: 'NO' },
    });
  });

  it('accepts quoted booleans inside sections and prefix-less sub-keys, as accelerate launch does', () => {
    const p = writeTmp(
      's.yaml',
      'distributed_type: FSDP\nfsdp_config:\n  sharding_strategy: full_shard\n  fsdp_offload_params: "true"\nfp8_config:\n  fp8_backend: te\n',
    );
    const { config, warnings } = loadConfigFile(p);
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ fsdp_config: { sharding_strategy: 'full_shard', fsdp_offload_params: 'true' } });
  });

  it('reads .json files as JSON', () => {
    const p = writeTmp('c.json', '{"distributed_type": "MULTI_CPU", "num_processes": 2}');
    expect(loadConfigFile(p)).toMatchObject({ format: 'json', config: { distributed_type: 'MULTI_CPU', num_processes: 2 } });
  });
});

describe('validation errors name the file, key, value, what is allowed and the nearest key', () => {
  it('unknown top-level key with a suggestion', () => {
    const p = writeTmp('typo.yaml', 'distributed_type: NO\nmixed_precison: fp16\n');
    const e = errorOf(() => loadConfigFile(p));
    expect(e.message).toBe(
      `Invalid Accelerate configuration in config file ${p}: unknown key "mixed_precison" (did you mean "mixed_precision"?)`,
    );
    expect(e.issues[0]).toMatchObject({ kind: 'unknown-key', key: 'mixed_precison', suggestion: 'mixed_precision' });
  });

  it('unknown key with nothing close (rejected, as Python does)', () => {
    const p = writeTmp('unk.yaml', 'distributed_type: NO\nbatch_size_magic: 3\n');
    expect(errorOf(() => loadConfigFile(p)).message).toBe(
      `Invalid Accelerate configuration in config file ${p}: unknown key "batch_size_magic": a LOCAL_MACHINE config has no such key; remove it (it may come from a newer Accelerate)`,
    );
  });

  it('SageMaker-only keys are unknown in a local config', () => {
    const e = errorOf(() => validateConfigDict({ distributed_type: 'NO', ec2_instance_type: 'ml.p3.2xlarge' }, 'config file f.yaml'));
    expect(e.issues.map((i) => i.key)).toEqual(['ec2_instance_type']);
  });

  it('missing distributed_type', () => {
    const p = writeTmp('nodt.yaml', 'num_processes: 2\n');
    expect(errorOf(() => loadConfigFile(p)).message).toBe(
      `Invalid Accelerate configuration in config file ${p}: key "distributed_type" is missing; it is required (one of: NO, MULTI_CPU, MULTI_GPU, MULTI_NPU, MULTI_MLU, MULTI_SDAA, MULTI_MUSA, MULTI_XPU, MULTI_HPU, MULTI_NEURON, DEEPSPEED, FSDP, XLA, MEGATRON_LM)`,
    );
  });

  it('value outside the allowed set, with the nearest value', () => {
    const p = writeTmp('mp.yaml', 'distributed_type: NO\nmixed_precision: fp32\n');
    expect(errorOf(() => loadConfigFile(p)).message).toBe(
      `Invalid Accelerate configuration in config file ${p}: key "mixed_precision" has value "fp32", expected one of: no, fp16, bf16, fp8 (or null) (did you mean "fp16"?)`,
    );
  });

  it('wrong type', () => {
    const p = writeTmp('np.yaml', 'distributed_type: MULTI_CPU\nnum_processes: four\n');
    const e = errorOf(() => loadConfigFile(p));
    expect(e.message).toBe(
      `Invalid Accelerate configuration in config file ${p}: key "num_processes" has value "four" (a string), expected an integer`,
    );
    expect(e.issues[0]).toMatchObject({ kind: 'invalid-type', key: 'num_processes', value: 'four', expected: 'an integer' });
  });

  it('non-integer number where an integer is needed', () => {
    const e = errorOf(() => validateConfigDict({ distributed_type: 'NO', machine_rank: 0.5 }, 'config file f.yaml'));
    expect(e.issues[0].message).toBe('key "machine_rank" has value 0.5 (a number), expected an integer');
  });

  it('nested value: dotted key', () => {
    const p = writeTmp('fsdp.yaml', 'distributed_type: FSDP\nfsdp_config:\n  fsdp_sharding_strategy: FULL_SHRAD\n');
    expect(errorOf(() => loadConfigFile(p)).message).toBe(
      `Invalid Accelerate configuration in config file ${p}: key "fsdp_config.fsdp_sharding_strategy" has value "FULL_SHRAD", expected one of: FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2 or an integer 1/2/3/4/5 (did you mean "FULL_SHARD"?)`,
    );
  });

  it('nested boolean that str_to_bool would reject', () => {
    const e = errorOf(() => validateConfigDict({ distributed_type: 'FSDP', fsdp_config: { fsdp_offload_params: 'maybe' } }, 'config file f.yaml'));
    expect(e.issues[0].message).toBe(
      'key "fsdp_config.fsdp_offload_params" has value "maybe" (a string), expected a boolean (true/false, or a string such as "yes"/"no")',
    );
  });

  it('unknown nested key: a warning by default (Python ignores it), an error with strictSections', () => {
    const p = writeTmp('sub.yaml', 'distributed_type: FSDP\nfsdp_config:\n  fsdp_shardng_strategy: FULL_SHARD\n');
    expect(loadConfigFile(p).warnings).toEqual([
      'unknown key "fsdp_config.fsdp_shardng_strategy" (did you mean "fsdp_config.fsdp_sharding_strategy"?); Accelerate ignores it',
    ]);
    expect(errorOf(() => loadConfigFile(p, { strictSections: true })).message).toBe(
      `Invalid Accelerate configuration in config file ${p}: unknown key "fsdp_config.fsdp_shardng_strategy" (did you mean "fsdp_config.fsdp_sharding_strategy"?)`,
    );
  });

  it('null where null is not allowed', () => {
    const e = errorOf(() => validateConfigDict({ distributed_type: 'NO', use_cpu: null }, 'config file f.yaml'));
    expect(e.issues[0].message).toBe('key "use_cpu" has value null (null), expected a boolean (true or false)');
  });

  it('reports every problem at once', () => {
    const p = writeTmp('many.yaml', 'mixed_precison: fp16\nnum_machines: two\n');
    expect(errorOf(() => loadConfigFile(p)).message).toBe(
      [
        `Invalid Accelerate configuration in config file ${p} (3 problems):`,
        '  - key "distributed_type" is missing; it is required (one of: NO, MULTI_CPU, MULTI_GPU, MULTI_NPU, MULTI_MLU, MULTI_SDAA, MULTI_MUSA, MULTI_XPU, MULTI_HPU, MULTI_NEURON, DEEPSPEED, FSDP, XLA, MEGATRON_LM)',
        '  - unknown key "mixed_precison" (did you mean "mixed_precision"?)',
        '  - key "num_machines" has value "two" (a string), expected an integer',
      ].join('\n'),
    );
  });

  it('bad compute_environment', () => {
    const e = errorOf(() => validateConfigDict({ compute_environment: 'LOCAL', distributed_type: 'NO' }, 'config file f.yaml'));
    expect(e.issues[0].message).toBe(
      'key "compute_environment" has value "LOCAL", expected one of: LOCAL_MACHINE, AMAZON_SAGEMAKER',
    );
  });

  it('SageMaker configs need their own keys and distributed types', () => {
    const e = errorOf(() =>
      validateConfigDict({ compute_environment: 'AMAZON_SAGEMAKER', distributed_type: 'MULTI_GPU', iam_role_name: 'r' }, 'config file s.yaml'),
    );
    expect(e.issues.map((i) => i.message)).toEqual([
      'key "ec2_instance_type" is missing; it is required for AMAZON_SAGEMAKER (a string)',
      'key "distributed_type" has value "MULTI_GPU", expected one of: NO, DATA_PARALLEL, MODEL_PARALLEL',
    ]);
    const ok = validateConfigDict(
      { compute_environment: 'AMAZON_SAGEMAKER', distributed_type: 'DATA_PARALLEL', ec2_instance_type: 'ml.p3.16xlarge', iam_role_name: 'r' },
      'x',
    );
    expect(ok.config).toMatchObject({ region: 'us-east-1', gpu_ids: 'all', py_version: 'py38' });
  });

  it('empty file, non-mapping content, unparsable text, missing file', () => {
    const empty = writeTmp('empty.yaml', '');
    expect(errorOf(() => loadConfigFile(empty)).message).toBe(
      `Invalid Accelerate configuration in config file ${empty}: the file is empty; expected a mapping of keys such as "distributed_type: NO" (run \`accelerate config\` to write one)`,
    );
    const list = writeTmp('list.yaml', '- a\n- b\n');
    expect(errorOf(() => loadConfigFile(list)).issues[0].message).toMatch(/^the content is a list; expected a mapping/);
    const bad = writeTmp('bad.json', '{"distributed_type": ');
    const e = errorOf(() => loadConfigFile(bad));
    expect(e.issues[0].kind).toBe('parse-error');
    expect(e.message).toMatch(new RegExp(`^Invalid Accelerate configuration in config file ${bad}: cannot parse it as JSON: `));
    const missing = join(dir, 'nope.yaml');
    expect(errorOf(() => loadConfigFile(missing)).message).toBe(
      `Invalid Accelerate configuration in config file ${missing}: the file does not exist; pass an existing file, or run \`accelerate config --config_file <path>\` to create it`,
    );
  });
});

describe('saving', () => {
  it('is atomic: creates folders, replaces the file, leaves no temporary file', () => {
    const target = join(dir, 'a/b/default_config.yaml');
    saveConfigFile({ distributed_type: 'NO' }, target);
    saveConfigFile({ distributed_type: 'MULTI_CPU', num_processes: 2 }, target);
    expect(read(target)).toBe('distributed_type: MULTI_CPU\nnum_processes: 2\n');
    expect(readdirSync(join(dir, 'a/b'))).toEqual(['default_config.yaml']);
  });

  it('quotes strings that YAML 1.1 would read as booleans', () => {
    expect(serializeConfig({ distributed_type: 'NO', mixed_precision: 'no', downcast_bf16: 'yes' }, 'yaml')).toBe(
      "distributed_type: 'NO'\ndowncast_bf16: 'yes'\nmixed_precision: 'no'\n",
    );
  });
});

describe('writeBasicConfig (accelerate config default)', () => {
  it('CPU machine: NO, use_cpu, 1 process; never overwrites', () => {
    const env = { HF_HOME: dir };
    const first = writeBasicConfig({ env, mixedPrecision: 'bf16' });
    expect(first).toEqual({ written: true, path: join(dir, 'accelerate/default_config.yaml') });
    const loaded = loadConfigFile(undefined, { env });
    expect(loaded.config).toMatchObject({ distributed_type: 'NO', use_cpu: true, num_processes: 1, mixed_precision: 'bf16' });
    const before = read(first.path);
    expect(writeBasicConfig({ env, mixedPrecision: 'fp16' })).toEqual({ written: false, path: first.path });
    expect(read(first.path)).toBe(before);
  });

  it('with N detected devices: MULTI_<kind> when N > 1, else NO', () => {
    expect(basicConfig('no', { kind: 'GPU', count: 4 })).toMatchObject({ distributed_type: 'MULTI_GPU', num_processes: 4, use_cpu: false });
    expect(basicConfig('no', { kind: 'XPU', count: 1 })).toMatchObject({ distributed_type: 'NO', num_processes: 1, use_cpu: false });
  });

  it('rejects an unknown precision', () => {
    expect(() => basicConfig('fp32')).toThrow('mixed_precision should be one of: no, fp16, bf16, fp8; got "fp32"');
    expect(existsSync(join(dir, 'accelerate'))).toBe(false);
  });
});
