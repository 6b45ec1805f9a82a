import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeProvenanceEnv, formatProvenance, resolveConfig, resolveLaunchConfig, SETTING_NAMES } from '../../src/config/resolve.js';
import { ConfigError } from '../../src/config/errors.js';
import { loadConfigFile } from '../../src/config/file.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'acc-resolve-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function configFile(text: string, name = 'cfg.yaml'): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('resolveConfig precedence: constructor > launch flag > env > config file > default', () => {
  it('defaults when nothing is given', () => {
    const r = resolveConfig({ env: {}, configFile: false });
    expect(r.values()).toEqual({
      mixedPrecision: 'no',
      gradientAccumulationSteps: 1,
      cpu: false,
      debug: false,
      distributedType: 'NO',
      numProcesses: 1,
      numMachines: 1,
      machineRank: 0,
      mainProcessIp: undefined,
      mainProcessPort: 29500,
      dynamoBackend: 'NO',
      useDeepspeed: false,
      useFsdp: false,
      useMegatronLm: false,
      splitBatches: false,
      dispatchBatches: undefined,
      evenBatches: true,
      projectDir: undefined,
      loggingDir: undefined,
      seed: undefined,
    });
    for (const name of SETTING_NAMES) expect(r[name].source, name).toBe('default');
    expect(r.warnings).toEqual([]);
    expect(r.configFile).toBeNull();
  });

  it('each layer overrides the one below, and says where the value came from', () => {
    const p = configFile('distributed_type: MULTI_CPU\nmixed_precision: fp16\nnum_processes: 4\nuse_cpu: true\n');
    const fileOnly = resolveConfig({ env: {}, configFile: p });
    expect(fileOnly.mixedPrecision).toEqual({ value: 'fp16', source: 'config file', detail: `${p} (mixed_precision)` });
    expect(fileOnly.numProcesses).toEqual({ value: 4, source: 'config file', detail: `${p} (num_processes)` });
    expect(fileOnly.distributedType).toEqual({ value: 'MULTI_CPU', source: 'config file', detail: `${p} (distributed_type)` });

    const env = { ACCELERATE_MIXED_PRECISION: 'bf16', WORLD_SIZE: '2' };
    const withEnv = resolveConfig({ env, configFile: p });
    expect(withEnv.mixedPrecision).toEqual({ value: 'bf16', source: 'env', detail: 'ACCELERATE_MIXED_PRECISION' });
    expect(withEnv.numProcesses).toEqual({ value: 2, source: 'env', detail: 'WORLD_SIZE' });

    const withFlag = resolveConfig({ env, configFile: p, launchFlags: { mixedPrecision: 'fp8' } });
    expect(withFlag.mixedPrecision).toEqual({ value: 'fp8', source: 'launch flag', detail: '--mixed_precision' });

    const withCtor = resolveConfig({
      env,
      configFile: p,
      launchFlags: { mixedPrecision: 'fp8' },
      constructorArgs: { mixedPrecision: 'no' },
    });
    expect(withCtor.mixedPrecision).toEqual({ value: 'no', source: 'constructor', detail: 'mixedPrecision' });
    expect(withCtor.cpu).toEqual({ value: true, source: 'config file', detail: `${p} (use_cpu)` });
  });

  it('the constructor beats ACCELERATE_GRADIENT_ACCUMULATION_STEPS (unlike Python, spec §13.4) and a warning says so', () => {
    const r = resolveConfig({
      env: { ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '4' },
      configFile: false,
      constructorArgs: { gradientAccumulationSteps: 2 },
    });
    expect(r.gradientAccumulationSteps).toEqual({ value: 2, source: 'constructor', detail: 'gradientAccumulationSteps' });
    expect(r.warnings).toEqual([
      "ACCELERATE_GRADIENT_ACCUMULATION_STEPS=4 disagrees with the constructor's gradientAccumulationSteps=2; using 2 (constructor beats env). Python Accelerate would use the env value here",
    ]);
    const agree = resolveConfig({
      env: { ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '2' },
      configFile: false,
      constructorArgs: { gradientAccumulationSteps: 2 },
    });
    expect(agree.warnings).toEqual([]);
    const envOnly = resolveConfig({ env: { ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '4' }, configFile: false });
    expect(envOnly.gradientAccumulationSteps).toEqual({ value: 4, source: 'env', detail: 'ACCELERATE_GRADIENT_ACCUMULATION_STEPS' });
  });

  it('warns when a launch flag overrides a different env value', () => {
    const r = resolveConfig({ env: { ACCELERATE_MIXED_PRECISION: 'fp16' }, configFile: false, launchFlags: { mixedPrecision: 'bf16' } });
    expect(r.warnings).toEqual([
      'ACCELERATE_MIXED_PRECISION=fp16 disagrees with the launch flag --mixed_precision=bf16; using bf16 (launch flag beats env)',
    ]);
  });

  it('reads env booleans like str_to_bool, dynamo backends in any case', () => {
    const r = resolveConfig({
      env: { ACCELERATE_USE_CPU: 'yes', ACCELERATE_DEBUG_MODE: 'False', ACCELERATE_DYNAMO_BACKEND: 'inductor' },
      configFile: false,
    });
    expect(r.cpu).toEqual({ value: true, source: 'env', detail: 'ACCELERATE_USE_CPU' });
    expect(r.debug).toEqual({ value: false, source: 'env', detail: 'ACCELERATE_DEBUG_MODE' });
    expect(r.dynamoBackend).toEqual({ value: 'INDUCTOR', source: 'env', detail: 'ACCELERATE_DYNAMO_BACKEND' });
  });

  it('distributed type: use* env flags beat the file; an explicit plugin beats both', () => {
    const p = configFile('distributed_type: MULTI_GPU\nnum_processes: 2\n');
    const env = resolveConfig({ env: { ACCELERATE_USE_FSDP: 'true' }, configFile: p });
    expect(env.useFsdp).toEqual({ value: true, source: 'env', detail: 'ACCELERATE_USE_FSDP' });
    expect(env.distributedType).toEqual({ value: 'FSDP', source: 'env', detail: 'ACCELERATE_USE_FSDP' });
    const ctor = resolveConfig({ env: { ACCELERATE_USE_FSDP: 'true' }, configFile: p, constructorArgs: { useDeepspeed: true } });
    expect(ctor.distributedType).toEqual({ value: 'DEEPSPEED', source: 'constructor', detail: 'useDeepspeed' });
    const ds = configFile('distributed_type: DEEPSPEED\ndeepspeed_config:\n  gradient_accumulation_steps: 8\n', 'ds.yaml');
    const fromDs = resolveConfig({ env: {}, configFile: ds });
    expect(fromDs.useDeepspeed).toEqual({ value: true, source: 'config file', detail: `${ds} (distributed_type: DEEPSPEED)` });
    expect(fromDs.gradientAccumulationSteps).toEqual({
      value: 8,
      source: 'config file',
      detail: `${ds} (deepspeed_config.gradient_accumulation_steps)`,
    });
  });

  it('num_processes: -1 in the file means "not set"', () => {
    const p = configFile('distributed_type: MULTI_GPU\n');
    expect(resolveConfig({ env: {}, configFile: p }).numProcesses).toEqual({ value: 1, source: 'default', detail: '' });
  });

  it('loggingDir falls back to projectDir', () => {
    const r = resolveConfig({ env: {}, configFile: false, constructorArgs: { projectDir: '/runs/a' } });
    expect(r.loggingDir).toEqual({ value: '/runs/a', source: 'default', detail: 'same as projectDir' });
    const r2 = resolveConfig({ env: {}, configFile: false, constructorArgs: { projectDir: '/runs/a', loggingDir: '/logs' } });
    expect(r2.loggingDir).toEqual({ value: '/logs', source: 'constructor', detail: 'loggingDir' });
  });

  it('carries config-file warnings and misspelt env names', () => {
    const p = configFile('distributed_type: NO\nfp16: true\n');
    const r = resolveConfig({ env: { ACCELERATE_MIXED_PRECISON: 'bf16' }, configFile: p });
    expect(r.mixedPrecision.value).toBe('fp16');
    expect(r.warnings).toEqual([
      `${p}: legacy key "fp16: true" read as "mixed_precision: fp16" (run \`accelerate config update\` to rewrite the file)`,
      'ACCELERATE_MIXED_PRECISON is not an Accelerate variable and is ignored; did you mean ACCELERATE_MIXED_PRECISION?',
    ]);
  });

  it('a launched rank does not repeat the warnings of the file the launcher already read', () => {
    const p = configFile('distributed_type: NO\nfp16: true\n');
    const launched = resolveConfig({ env: { ACCELERATE_CONFIG_FILE: p, ACCELERATE_CONFIG_PROVENANCE: encodeProvenanceEnv({}) } });
    expect(launched.mixedPrecision.value).toBe('fp16');
    expect(launched.warnings).toEqual([]);
    // Named by the user (no launcher provenance): warned.
    expect(resolveConfig({ env: { ACCELERATE_CONFIG_FILE: p } }).warnings).toHaveLength(1);
  });
});

describe('which config file takes part', () => {
  it('the default file under HF_HOME when present; ACCELERATE_CONFIG_FILE wins; false means none', () => {
    const hf = join(dir, 'hf');
    mkdirSync(join(hf, 'accelerate'), { recursive: true });
    const def = join(hf, 'accelerate/default_config.yaml');
    writeFileSync(def, 'distributed_type: NO\nmixed_precision: bf16\n');
    const other = configFile('distributed_type: NO\nmixed_precision: fp16\n', 'other.yaml');

    expect(resolveConfig({ env: { HF_HOME: hf } }).mixedPrecision).toEqual({
      value: 'bf16',
      source: 'config file',
      detail: `${def} (mixed_precision)`,
    });
    expect(resolveConfig({ env: { HF_HOME: hf, ACCELERATE_CONFIG_FILE: other } }).mixedPrecision.value).toBe('fp16');
    expect(resolveConfig({ env: { HF_HOME: hf }, configFile: false }).mixedPrecision.source).toBe('default');
    expect(resolveConfig({ env: { HF_HOME: join(dir, 'empty') } }).configFile).toBeNull();
    const loaded = loadConfigFile(other);
    expect(resolveConfig({ env: {}, configFile: loaded }).configFile).toBe(loaded);
    // A rank `accelerate launch` started without a file (e.g. --cpu skips the default one, as Python's does)
    // does not read the default file behind the launcher's back.
    const launchedWithout = resolveConfig({ env: { HF_HOME: hf, ACCELERATE_CONFIG_PROVENANCE: encodeProvenanceEnv({}) } });
    expect(launchedWithout.configFile).toBeNull();
    expect(launchedWithout.mixedPrecision.source).toBe('default');
  });
});

describe('inside the launcher: launch flags and the file, one merge', () => {
  it('a flag that chooses the distributed type sets it alone; DeepSpeed\'s GA comes from the file only for DeepSpeed', () => {
    const ds = configFile('distributed_type: DEEPSPEED\nnum_processes: 2\ndeepspeed_config:\n  gradient_accumulation_steps: 4\n');
    const fromFile = resolveConfig({ env: {}, configFile: ds });
    expect(fromFile.distributedType).toEqual({ value: 'DEEPSPEED', source: 'config file', detail: `${ds} (distributed_type)` });
    expect(fromFile.gradientAccumulationSteps.value).toBe(4);
    const fsdp = resolveConfig({ env: {}, configFile: ds, launchFlags: { useFsdp: true } });
    expect(fsdp.distributedType).toEqual({ value: 'FSDP', source: 'launch flag', detail: '--use_fsdp' });
    expect(fsdp.useDeepspeed).toEqual({ value: false, source: 'default', detail: '' });
    expect(fsdp.gradientAccumulationSteps).toEqual({ value: 1, source: 'default', detail: '' });
    // --use_deepspeed with a file of another type: the file's DeepSpeed section still gives the steps.
    const no = configFile('distributed_type: NO\ndeepspeed_config:\n  gradient_accumulation_steps: 3\n', 'no.yaml');
    const flagged = resolveConfig({ env: {}, configFile: no, launchFlags: { useDeepspeed: true } });
    expect(flagged.distributedType.value).toBe('DEEPSPEED');
    expect(flagged.gradientAccumulationSteps).toEqual({ value: 3, source: 'config file', detail: `${no} (deepspeed_config.gradient_accumulation_steps)` });
    // The flag's name in the detail.
    const multi = resolveConfig({ env: {}, configFile: no, launchFlags: { distributedType: 'MULTI_GPU', processGroupTimeout: 60 }, launchFlagNames: { distributedType: 'multi_gpu' } });
    expect(multi.distributedType).toEqual({ value: 'MULTI_GPU', source: 'launch flag', detail: '--multi_gpu' });
    expect(multi.processGroupTimeout).toEqual({ value: 60, source: 'launch flag', detail: '--timeout' });
  });

  it('resolveLaunchConfig returns problems instead of throwing and keeps a bad flag or file value for the launcher to name', () => {
    const f = configFile('distributed_type: MULTI_CPU\nnum_processes: 2\nmain_process_port: 99999\n');
    expect(() => resolveConfig({ env: {}, configFile: f, launchFlags: { numProcesses: 0 } })).toThrow(ConfigError);
    const { config, problems } = resolveLaunchConfig({ env: {}, configFile: loadConfigFile(f), launchFlags: { numProcesses: 0 } });
    expect(config.numProcesses).toEqual({ value: 0, source: 'launch flag', detail: '--num_processes' });
    expect(config.mainProcessPort).toEqual({ value: 99999, source: 'config file', detail: `${f} (main_process_port)` });
    expect(problems.map((p) => [p.source, p.issue.key])).toEqual([
      ['launch flags', 'numProcesses'],
      [`config file ${f}`, 'main_process_port'],
    ]);
  });
});

describe('launcher provenance', () => {
  it('reports the launcher\'s source for values it exported, when the value still matches', () => {
    const env = {
      ACCELERATE_MIXED_PRECISION: 'bf16',
      ACCELERATE_USE_CPU: 'true',
      ACCELERATE_CONFIG_PROVENANCE: encodeProvenanceEnv({
        ACCELERATE_MIXED_PRECISION: { value: 'bf16', source: 'config file', detail: '/c/default_config.yaml (mixed_precision)' },
        ACCELERATE_USE_CPU: { value: 'false', source: 'launch flag', detail: '--cpu' },
      }),
    };
    const r = resolveConfig({ env, configFile: false });
    expect(r.mixedPrecision).toEqual({
      value: 'bf16',
      source: 'config file',
      detail: '/c/default_config.yaml (mixed_precision) (via ACCELERATE_MIXED_PRECISION)',
    });
    // Changed since the launcher wrote it: plain env.
    expect(r.cpu).toEqual({ value: true, source: 'env', detail: 'ACCELERATE_USE_CPU' });
  });

  it('ignores a malformed provenance variable with a warning', () => {
    const r = resolveConfig({ env: { ACCELERATE_CONFIG_PROVENANCE: '{oops' }, configFile: false });
    expect(r.warnings).toEqual(['ACCELERATE_CONFIG_PROVENANCE is not valid JSON and is ignored']);
  });
});

describe('bad values', () => {
  function err(fn: () => unknown): ConfigError {
    try {
      fn();
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
    throw new Error('expected ConfigError');
  }

  it('a malformed env boolean names the variable', () => {
    expect(err(() => resolveConfig({ env: { ACCELERATE_USE_CPU: 'maybe' }, configFile: false })).message).toBe(
      'Invalid Accelerate configuration in the environment: ACCELERATE_USE_CPU="maybe" is not a boolean: one of y, yes, t, true, on, 1 (true) or n, no, f, false, off, 0 (false)',
    );
  });

  it('a bad env precision, integer and dynamo backend', () => {
    const e = err(() =>
      resolveConfig({
        env: {
          ACCELERATE_MIXED_PRECISION: 'fp32',
          ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '0',
          ACCELERATE_DYNAMO_BACKEND: 'inductr',
        },
        configFile: false,
      }),
    );
    expect(e.message).toBe(
      [
        'Invalid Accelerate configuration in the environment (3 problems):',
        '  - ACCELERATE_MIXED_PRECISION="fp32" is not one of: no, fp16, bf16, fp8',
        '  - ACCELERATE_GRADIENT_ACCUMULATION_STEPS="0" is not an integer >= 1',
        '  - ACCELERATE_DYNAMO_BACKEND="inductr" is not one of: NO, EAGER, AOT_EAGER, INDUCTOR, AOT_TS_NVFUSER, NVPRIMS_NVFUSER, CUDAGRAPHS, OFI, FX2TRT, ONNXRT, TENSORRT, AOT_TORCHXLA_TRACE_ONCE, TORCHXLA_TRACE_ONCE, TVM, HPU_BACKEND, NEURON (any case)',
      ].join('\n'),
    );
  });

  it('a bad constructor value names the argument', () => {
    expect(
      err(() => resolveConfig({ env: {}, configFile: false, constructorArgs: { mixedPrecision: 'fp32' as never } })).message,
    ).toBe(
      'Invalid Accelerate configuration in constructor arguments: mixedPrecision has value "fp32", expected one of: no, fp16, bf16, fp8 (did you mean "fp16"?)',
    );
  });
});

describe('formatProvenance', () => {
  it('prints an aligned table with every setting, then the warnings', () => {
    const r = resolveConfig({
      env: { ACCELERATE_MIXED_PRECISION: 'fp16', ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '3' },
      configFile: false,
      constructorArgs: { gradientAccumulationSteps: 2, seed: 42 },
    });
    const text = formatProvenance(r);
    expect(text).toBe(r.report());
    expect(text.split('\n')).toEqual([
      'setting                    value    source       detail',
      'mixedPrecision             fp16     env          ACCELERATE_MIXED_PRECISION',
      'gradientAccumulationSteps  2        constructor  gradientAccumulationSteps',
      'cpu                        false    default',
      'debug                      false    default',
      'distributedType            NO       default',
      'numProcesses               1        default',
      'numMachines                1        default',
      'machineRank                0        default',
      'mainProcessIp              (unset)  default      this machine (127.0.0.1)',
      'mainProcessPort            29500    default',
      'processGroupTimeout        (unset)  default      1800 s (600 s for nccl), as InitProcessGroupKwargs',
      'dynamoBackend              NO       default',
      'useDeepspeed               false    default',
      'useFsdp                    false    default',
      'useMegatronLm              false    default',
      'splitBatches               false    default',
      'dispatchBatches            (unset)  default      decided per data loader',
      'evenBatches                true     default',
      'projectDir                 (unset)  default',
      'loggingDir                 (unset)  default',
      'seed                       42       constructor  seed',
      "warning: ACCELERATE_GRADIENT_ACCUMULATION_STEPS=3 disagrees with the constructor's gradientAccumulationSteps=2; using 2 (constructor beats env). Python Accelerate would use the env value here",
    ]);
  });

  it('the result is frozen', () => {
    const r = resolveConfig({ env: {}, configFile: false });
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(r.mixedPrecision)).toBe(true);
    expect(r.value('evenBatches')).toBe(true);
  });
});
