// DeepSpeed config resolution and prepare-time "auto" filling, compared case by case
// against Python Accelerate 1.15 itself (.venv-py), run once for the whole table.
//
// DeepSpeed is not installed in the venv. DeepSpeedPlugin / set_mixed_precision run
// without it; Accelerator._prepare_deepspeed needs `import deepspeed`, so for the
// prepare cases this test writes a stub `deepspeed` package into a temp dir on
// PYTHONPATH (with a dist-info so Accelerate sees version 0.17.0). Its `initialize`
// raises with the config_params Accelerate built, which is the reference; all the
// filling before that call is Accelerate's own code. See fixtures/ds_reference.py.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveSections } from '@accelerate/core/internal';
import {
  DeepSpeedConfigError,
  fillAuto,
  resolveDeepSpeedConfig,
  toDeepSpeedJson,
  validateDeepSpeedLaunchConfig,
  type DeepSpeedConfig,
  type DeepSpeedOptions,
  type PrepareFacts,
} from '../src/config.js';

const PY = join(import.meta.dirname, '..', '..', '..', '.venv-py', 'bin', 'python');
const SCRIPT = join(import.meta.dirname, 'fixtures', 'ds_reference.py');
const TMP = mkdtempSync(join(tmpdir(), 'ds-config-'));

// ---- the table ------------------------------------------------------------------------

interface Prepare {
  loader_batch_sizes?: number[];
  split_batches?: boolean;
  num_processes?: number;
  gradient_accumulation_steps?: number;
  model?: { hidden_size?: number; hidden_sizes?: number[] };
  optimizer?: { kind: 'real' | 'dummy' | 'none'; lr?: number; weight_decay?: number };
  scheduler?: { kind: 'real' | 'dummy' | 'none'; warmup_num_steps?: number; total_num_steps?: number; callable?: boolean };
}
interface Case {
  name: string;
  env?: Record<string, string>;
  plugin?: Record<string, unknown>;
  /** A DeepSpeed config written to a file and passed as hf_ds_config. */
  file?: DeepSpeedConfig;
  mixed_precision?: string;
  prepare?: Prepare;
  /** Both must fail; our message must match this. */
  error?: RegExp;
}

let n = 0;
function dsFile(config: DeepSpeedConfig): string {
  const p = join(TMP, `ds${n++}.json`);
  writeFileSync(p, JSON.stringify(config));
  return p;
}

const Z2 = { zero_optimization: { stage: 2 } };
const HIDDEN_AUTO = {
  train_micro_batch_size_per_gpu: 'auto',
  train_batch_size: 'auto',
  gradient_accumulation_steps: 'auto',
  gradient_clipping: 'auto',
  zero_optimization: { stage: 3, reduce_bucket_size: 'auto', stage3_prefetch_bucket_size: 'auto', stage3_param_persistence_threshold: 'auto', stage3_gather_16bit_weights_on_model_save: 'auto' },
};
const OPT = { type: 'AdamW', params: { lr: 'auto', weight_decay: 'auto' } };
const SCHED = { type: 'WarmupDecayLR', params: { warmup_min_lr: 'auto', warmup_max_lr: 'auto', warmup_num_steps: 'auto', total_num_steps: 'auto' } };

const B65: Case[] = [
  { name: 'defaults' },
  { name: 'env: stage 3, offload cpu + nvme, 16-bit save', env: { ACCELERATE_DEEPSPEED_ZERO_STAGE: '3', ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE: 'cpu', ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE: 'nvme', ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_NVME_PATH: '/nvme', ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL: 'true' } },
  { name: 'env: GA 4, clipping 0.5, zero3 init on stage 2 (forced off)', env: { ACCELERATE_GRADIENT_ACCUMULATION_STEPS: '4', ACCELERATE_GRADIENT_CLIPPING: '0.5', ACCELERATE_DEEPSPEED_ZERO3_INIT: 'true' } },
  { name: 'code: stage 1, GA 8, clipping 2, nvme path without nvme device', plugin: { zero_stage: 1, gradient_accumulation_steps: 8, gradient_clipping: 2.0, offload_optimizer_nvme_path: '/x' } },
  { name: 'code wins over env', env: { ACCELERATE_DEEPSPEED_ZERO_STAGE: '1' }, plugin: { zero_stage: 3, zero3_init_flag: false } },
  { name: 'mixed precision fp16', mixed_precision: 'fp16' },
  { name: 'mixed precision bf16', mixed_precision: 'bf16' },
  { name: 'mixed precision fp8 -> bf16', mixed_precision: 'fp8' },
  { name: 'file: plugin values fill only its "auto"', file: { gradient_accumulation_steps: 'auto', gradient_clipping: 'auto', train_batch_size: 'auto', zero_optimization: { stage: 'auto', offload_optimizer: { device: 'auto', nvme_path: 'auto' }, offload_param: { device: 'cpu' } } }, plugin: { zero_stage: 3, gradient_accumulation_steps: 2, offload_param_device: 'nvme' } },
  { name: 'file: values read back into the plugin', file: { gradient_accumulation_steps: 3, gradient_clipping: 0.7, zero_optimization: { stage: 3, stage3_gather_16bit_weights_on_model_save: true } } },
  { name: 'file: fp16 section "auto" filled from fp16 precision', file: { ...Z2, gradient_accumulation_steps: 1, fp16: { enabled: 'auto', loss_scale: 0 } }, mixed_precision: 'fp16' },
  { name: 'file: fp16 enabled + precision bf16 -> error', file: { ...Z2, gradient_accumulation_steps: 1, fp16: { enabled: true } }, mixed_precision: 'bf16', error: /mixed precision is bf16, but the DeepSpeed config .* enables fp16/ },
  { name: 'file: bf16 enabled + precision fp16 -> error', file: { ...Z2, gradient_accumulation_steps: 1, bf16: { enabled: 'true' } }, mixed_precision: 'fp16', error: /enables bf16/ },
  { name: 'file without zero_optimization -> error', file: { gradient_accumulation_steps: 1, train_batch_size: 8 }, error: /has no zero_optimization section/ },
  { name: 'file + accelerate-config DS fields -> error', file: { ...Z2, gradient_accumulation_steps: 1 }, env: { ACCELERATE_CONFIG_DS_FIELDS: 'deepspeed_config_file,zero_stage,gradient_clipping' }, error: /must not also set zero_stage, gradient_clipping/ },
];

const B66: Case[] = [
  { name: 'one loader, one process', prepare: { loader_batch_sizes: [8], model: { hidden_size: 16 } } },
  { name: 'two loaders, 2 processes, GA 2: the min', prepare: { loader_batch_sizes: [8, 4], num_processes: 2, gradient_accumulation_steps: 2, optimizer: { kind: 'real' } } },
  { name: 'two loaders, is_train_batch_min false: the max', plugin: { is_train_batch_min: false }, prepare: { loader_batch_sizes: [8, 4], num_processes: 2 } },
  { name: 'split_batches: batch / P', prepare: { loader_batch_sizes: [16], split_batches: true, num_processes: 4, gradient_accumulation_steps: 3 } },
  { name: 'hidden-size keys from hidden_size', file: HIDDEN_AUTO, prepare: { loader_batch_sizes: [2], num_processes: 2, model: { hidden_size: 33 } } },
  { name: 'hidden-size keys from max(hidden_sizes)', file: HIDDEN_AUTO, prepare: { loader_batch_sizes: [2], model: { hidden_sizes: [8, 24, 16] } } },
  { name: 'hidden-size keys, model without config -> error', file: HIDDEN_AUTO, prepare: { loader_batch_sizes: [2] }, error: /no config\.hidden_size .*reduce_bucket_size/ },
  { name: 'no loader -> error', prepare: { model: { hidden_size: 4 } }, error: /no data loader was passed/ },
  { name: 'file GA 4, accelerator GA 2: DeepSpeed wins, warning', file: { ...Z2, gradient_accumulation_steps: 4, train_micro_batch_size_per_gpu: 'auto', train_batch_size: 'auto' }, prepare: { loader_batch_sizes: [8], num_processes: 2, gradient_accumulation_steps: 2 } },
  { name: 'fixed micro batch in the file', file: { ...Z2, gradient_accumulation_steps: 'auto', train_micro_batch_size_per_gpu: 5, train_batch_size: 'auto' }, prepare: { loader_batch_sizes: [8], num_processes: 3, gradient_accumulation_steps: 2 } },
  { name: 'leftover "auto" -> error naming the key', file: { zero_optimization: { stage: 2, sub_group_size: 'auto' }, gradient_accumulation_steps: 1 }, prepare: { loader_batch_sizes: [8] }, error: /zero_optimization\.sub_group_size is "auto"/ },
  { name: 'mixed precision bf16 through the Accelerator', mixed_precision: 'bf16', prepare: { loader_batch_sizes: [8] } },
];

const B67: Case[] = [
  { name: 'optimizer in the config + a real optimizer -> error', file: { ...Z2, gradient_accumulation_steps: 1, optimizer: OPT }, prepare: { loader_batch_sizes: [8], optimizer: { kind: 'real' } }, error: /optimizer section and the code passes an optimizer/ },
  { name: 'DummyOptim without an optimizer in the config -> error', prepare: { loader_batch_sizes: [8], optimizer: { kind: 'dummy' } }, error: /DummyOptim needs an optimizer section/ },
  { name: 'scheduler in the config + a real scheduler -> error', file: { ...Z2, gradient_accumulation_steps: 1, scheduler: SCHED }, prepare: { loader_batch_sizes: [8], optimizer: { kind: 'real' }, scheduler: { kind: 'real' } }, error: /scheduler section and the code passes a scheduler/ },
  { name: 'DummyScheduler without config scheduler or callable -> error', file: { ...Z2, gradient_accumulation_steps: 1, optimizer: OPT }, prepare: { loader_batch_sizes: [8], optimizer: { kind: 'dummy' }, scheduler: { kind: 'dummy' } }, error: /DummyScheduler needs a scheduler section/ },
  { name: 'DummyOptim + a real scheduler -> error', file: { ...Z2, gradient_accumulation_steps: 1, optimizer: OPT }, prepare: { loader_batch_sizes: [8], optimizer: { kind: 'dummy' }, scheduler: { kind: 'real' } }, error: /only scheduler that goes with a DummyOptim/ },
  { name: 'DummyOptim + DummyScheduler fill the params', file: { ...Z2, gradient_accumulation_steps: 'auto', optimizer: OPT, scheduler: SCHED }, prepare: { loader_batch_sizes: [4], num_processes: 2, optimizer: { kind: 'dummy', lr: 3e-4, weight_decay: 0.01 }, scheduler: { kind: 'dummy', warmup_num_steps: 10, total_num_steps: 101 } } },
  { name: 'DummyOptim defaults, DummyScheduler warmup 0 -> 1, split batches keep total', file: { ...Z2, gradient_accumulation_steps: 'auto', optimizer: OPT, scheduler: SCHED }, prepare: { loader_batch_sizes: [4], split_batches: true, num_processes: 2, optimizer: { kind: 'dummy' }, scheduler: { kind: 'dummy', total_num_steps: 101 } } },
  { name: 'real optimizer + DummyScheduler with a config scheduler', file: { ...Z2, gradient_accumulation_steps: 'auto', scheduler: SCHED }, prepare: { loader_batch_sizes: [4], optimizer: { kind: 'real', lr: 0.02 }, scheduler: { kind: 'dummy', warmup_num_steps: 3, total_num_steps: 9 } } },
  { name: 'DummyScheduler without total_num_steps leaves an "auto" -> error naming it', file: { ...Z2, gradient_accumulation_steps: 'auto', scheduler: SCHED }, prepare: { loader_batch_sizes: [4], optimizer: { kind: 'real', lr: 0.02 }, scheduler: { kind: 'dummy', warmup_num_steps: 3 } }, error: /scheduler\.params\.total_num_steps is "auto"/ },
];

const ALL = [...B65, ...B66, ...B67];

// ---- our side -----------------------------------------------------------------------------

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function ours(c: Case) {
  const { sections, problems } = resolveSections({ env: c.env ?? {}, file: null });
  expect(problems).toEqual([]);
  const user: DeepSpeedOptions = Object.fromEntries(Object.entries(c.plugin ?? {}).map(([k, v]) => [camel(k), v]));
  if (c.file) user.hfDsConfig = dsFile(c.file);
  const plan = resolveDeepSpeedConfig({ user, section: sections.deepspeed, mixedPrecision: c.mixed_precision ?? 'no', configDsFields: c.env?.ACCELERATE_CONFIG_DS_FIELDS });
  if (!c.prepare) return { plan, config: plan.config, warnings: plan.warnings };
  const p = c.prepare;
  const facts: PrepareFacts = {
    loaderBatchSizes: p.loader_batch_sizes ?? [],
    splitBatches: p.split_batches,
    numProcesses: p.num_processes ?? 1,
    gradientAccumulationSteps: p.gradient_accumulation_steps ?? 1,
    hiddenSize: p.model?.hidden_size ?? (p.model?.hidden_sizes ? Math.max(...p.model.hidden_sizes) : undefined),
    optimizer: p.optimizer && { kind: p.optimizer.kind, lr: p.optimizer.lr ?? (p.optimizer.kind === 'real' ? 1e-3 : undefined), weightDecay: p.optimizer.weight_decay },
    scheduler: p.scheduler && { kind: p.scheduler.kind, warmupNumSteps: p.scheduler.warmup_num_steps, totalNumSteps: p.scheduler.total_num_steps, hasCallable: p.scheduler.callable },
  };
  const filled = fillAuto(plan, facts);
  return { plan, config: filled.config, warnings: [...plan.warnings, ...filled.warnings], ga: filled.gradientAccumulationSteps };
}

/** Python's JSON has "Infinity" for steps_per_print. */
const asPython = (config: DeepSpeedConfig) => JSON.parse(JSON.stringify(config, (_k, v: unknown) => (v === Infinity ? 'Infinity' : v)));

// ---- Python's side, once ---------------------------------------------------------------------

interface PyResult {
  config?: DeepSpeedConfig;
  attrs?: Record<string, unknown>;
  accelerator_gradient_accumulation_steps?: number;
  warnings: string[];
  error?: string;
}

function runPython(cases: Case[]): PyResult[] | string {
  if (!existsSync(PY)) return `the Python venv is missing (${PY})`;
  // The stub deepspeed package (see the header).
  const stub = join(TMP, 'stub');
  mkdirSync(join(stub, 'deepspeed', 'runtime'), { recursive: true });
  mkdirSync(join(stub, 'deepspeed-0.17.0.dist-info'), { recursive: true });
  writeFileSync(
    join(stub, 'deepspeed', '__init__.py'),
    '__version__ = "0.17.0"\nfrom . import runtime, utils  # noqa\n\ndef initialize(**kwargs):\n    import __main__\n    raise __main__.Captured(kwargs)\n',
  );
  writeFileSync(join(stub, 'deepspeed', 'runtime', '__init__.py'), 'from . import lr_schedules\n');
  writeFileSync(join(stub, 'deepspeed', 'runtime', 'lr_schedules.py'), 'VALID_LR_SCHEDULES = ["LRRangeTest", "OneCycle", "WarmupLR", "WarmupDecayLR", "WarmupCosineLR"]\n');
  writeFileSync(join(stub, 'deepspeed', 'utils.py'), 'def set_z3_leaf_modules(model, classes):\n    pass\n');
  writeFileSync(join(stub, 'deepspeed-0.17.0.dist-info', 'METADATA'), 'Metadata-Version: 2.1\nName: deepspeed\nVersion: 0.17.0\n');
  const input = cases.map((c) => ({
    env: c.env ?? {},
    plugin: { ...(c.plugin ?? {}), ...(c.file ? { hf_ds_config: dsFile(c.file) } : {}) },
    mixed_precision: c.mixed_precision ?? 'no',
    ...(c.prepare ? { prepare: c.prepare } : {}),
  }));
  const r = spawnSync(PY, [SCRIPT], {
    input: JSON.stringify(input),
    cwd: TMP,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PYTHONPATH: stub, CUDA_VISIBLE_DEVICES: '', HF_HUB_OFFLINE: '1' },
    timeout: 240_000,
  });
  if (r.status !== 0) throw new Error(`the Python reference failed (${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as PyResult[];
}

const py = runPython(ALL);
const skip = typeof py === 'string';
if (skip) console.warn(`[plugin-deepspeed] skipping the comparisons with Python Accelerate: ${py}`);
const pyOf = (c: Case) => (py as PyResult[])[ALL.indexOf(c)]!;

function compare(c: Case) {
  const ref = pyOf(c);
  if (c.error) {
    expect(ref.error, `Python should fail too: ${JSON.stringify(ref.config)}`).toBeDefined();
    let err: unknown;
    try {
      ours(c);
    } catch (e) {
      err = e;
    }
    expect(err, `Python: ${ref.error}`).toBeInstanceOf(DeepSpeedConfigError);
    expect((err as Error).message).toMatch(c.error);
    return;
  }
  expect(ref.error).toBeUndefined();
  const o = ours(c);
  expect(asPython(o.config)).toEqual(ref.config);
  if (ref.attrs && !c.prepare) {
    expect({
      gradient_accumulation_steps: o.plan.gradientAccumulationSteps,
      gradient_clipping: o.plan.gradientClipping,
      zero_stage: o.plan.zeroStage,
      offload_optimizer_device: o.plan.offloadOptimizerDevice,
      offload_param_device: o.plan.offloadParamDevice,
      offload_optimizer_nvme_path: o.plan.offloadOptimizerNvmePath,
      offload_param_nvme_path: o.plan.offloadParamNvmePath,
      zero3_init_flag: o.plan.zero3InitFlag,
      zero3_save_16bit_model: o.plan.zero3Save16bitModel,
    }).toEqual(ref.attrs);
  }
  if (c.prepare) {
    expect(o.ga).toBe(ref.accelerator_gradient_accumulation_steps);
    expect(o.warnings.some((w) => /mismatch/.test(w))).toBe(ref.warnings.some((w) => /mismatch/.test(w)));
  }
  const pyZero3Warned = ref.warnings.some((w) => /Zero3 Init flag is only applicable/.test(w));
  if (!c.prepare) expect(o.warnings.some((w) => /zero3_init_flag only applies/.test(w))).toBe(pyZero3Warned);
}

describe.skipIf(skip)('the same config as Python Accelerate 1.15', () => {
  describe('[B65] DeepSpeedPlugin: settings, config file, mixed precision', () => {
    it.each(B65.map((c) => [c.name, c] as const))('%s', (_n, c) => compare(c));
  });
  describe('[B66] prepare: "auto" filling', () => {
    it.each(B66.map((c) => [c.name, c] as const))('%s', (_n, c) => compare(c));
  });
  describe('[B67] prepare: optimizer / scheduler consistency and their params', () => {
    it.each(B67.map((c) => [c.name, c] as const))('%s', (_n, c) => compare(c));
  });
});

// ---- where this port differs on purpose (Python's output shown for contrast) --------------------

describe('deliberate differences from Python', () => {
  it('[B65] a file without gradient_accumulation_steps uses the Accelerator\'s (Python: 1, silently), with a warning', () => {
    const file = dsFile({ ...Z2, train_micro_batch_size_per_gpu: 'auto', train_batch_size: 'auto' });
    const plan = resolveDeepSpeedConfig({ user: { hfDsConfig: file } });
    expect(plan.config.gradient_accumulation_steps).toBe('auto');
    expect(plan.warnings.join()).toMatch(/has no gradient_accumulation_steps: accelerate-ts uses the Accelerator's/);
    const filled = fillAuto(plan, { loaderBatchSizes: [8], numProcesses: 2, gradientAccumulationSteps: 4 });
    expect(filled.config).toMatchObject({ gradient_accumulation_steps: 4, train_batch_size: 64 });
    expect(filled.gradientAccumulationSteps).toBe(4);
    expect(filled.warnings).toEqual([]);
  });

  it('[B65] gradientClipping 0 is written as 0 (Python drops the key, which DeepSpeed also reads as no clipping)', () => {
    expect(resolveDeepSpeedConfig({ user: { gradientClipping: 0 } }).config.gradient_clipping).toBe(0);
    const { sections } = resolveSections({ env: { ACCELERATE_GRADIENT_CLIPPING: '0' }, file: null });
    const plan = resolveDeepSpeedConfig({ section: sections.deepspeed });
    expect(plan.config.gradient_clipping).toBe(0);
    expect(fillAuto(plan, { loaderBatchSizes: [1], numProcesses: 1, gradientAccumulationSteps: 1 }).config.gradient_clipping).toBe(0);
    // unset: "auto", 1.0 at prepare, as in Python
    expect(fillAuto(resolveDeepSpeedConfig(), { loaderBatchSizes: [1], numProcesses: 1, gradientAccumulationSteps: 1 }).config.gradient_clipping).toBe(1);
  });

  it('[B66] a fixed train_batch_size that is not micro × GA × P is an error with the three numbers (Python passes it to DeepSpeed, which asserts)', () => {
    const file = dsFile({ ...Z2, gradient_accumulation_steps: 2, train_micro_batch_size_per_gpu: 4, train_batch_size: 10 });
    expect(() => resolveDeepSpeedConfig({ user: { hfDsConfig: file }, numProcesses: 2 })).toThrow(
      /train_batch_size is 10 .* train_micro_batch_size_per_gpu \(4\) × gradient_accumulation_steps \(2\) × processes \(2\) = 16/,
    );
    // the world unknown at resolve: caught at prepare
    const plan = resolveDeepSpeedConfig({ user: { hfDsConfig: file } });
    expect(() => fillAuto(plan, { loaderBatchSizes: [4], numProcesses: 2, gradientAccumulationSteps: 2 })).toThrow(/= 16\. Set train_batch_size to 16 or to "auto"/);
    // micro "auto" filled from the loader, fixed total that does not fit
    const file2 = dsFile({ ...Z2, gradient_accumulation_steps: 'auto', train_micro_batch_size_per_gpu: 'auto', train_batch_size: 32 });
    expect(() => fillAuto(resolveDeepSpeedConfig({ user: { hfDsConfig: file2 } }), { loaderBatchSizes: [8], numProcesses: 3, gradientAccumulationSteps: 1 })).toThrow(
      /train_batch_size is 32 .*\(8\) × .*\(1\) × processes \(3\) = 24/,
    );
  });

  it('mixed_precision: no beside a DeepSpeed config file is not refused (Python refuses any mixed_precision from the accelerate config)', () => {
    const file = dsFile({ ...Z2, gradient_accumulation_steps: 1 });
    expect(() => resolveDeepSpeedConfig({ user: { hfDsConfig: file }, configDsFields: 'mixed_precision' })).not.toThrow();
    expect(() => resolveDeepSpeedConfig({ user: { hfDsConfig: file }, configDsFields: 'mixed_precision', mixedPrecision: 'bf16' })).toThrow(/must not also set mixed_precision/);
  });

  it('collects every problem at once, naming each field as written', () => {
    const { sections } = resolveSections({ env: { ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE: 'disk' }, file: null });
    const err = (() => {
      try {
        resolveDeepSpeedConfig({ section: sections.deepspeed, user: { zeroStage: 5 as never, gradientAccumulationSteps: 0 } });
      } catch (e) {
        return e as DeepSpeedConfigError;
      }
    })();
    // the row's own parse refuses `disk` while resolving the section, so the section holds the default: two problems from code
    expect(err?.problems.length).toBeGreaterThanOrEqual(2);
    expect(err?.message).toMatch(/zeroStage in deepspeed\(\{\.\.\.\}\) is 5; it must be a ZeRO stage/);
    expect(err?.message).toMatch(/gradientAccumulationSteps in deepspeed\(\{\.\.\.\}\) is 0/);
  });
});

describe('inputs and outputs', () => {
  it('hfDsConfig as an object (not modified), JSON text, or base64 JSON give the same config', () => {
    const obj = { ...Z2, gradient_accumulation_steps: 'auto', train_batch_size: 'auto' };
    const a = resolveDeepSpeedConfig({ user: { hfDsConfig: obj }, mixedPrecision: 'bf16' }).config;
    const b = resolveDeepSpeedConfig({ user: { hfDsConfig: JSON.stringify(obj) }, mixedPrecision: 'bf16' }).config;
    const c = resolveDeepSpeedConfig({ user: { hfDsConfig: Buffer.from(JSON.stringify(obj)).toString('base64url') }, mixedPrecision: 'bf16' }).config;
    expect(a).toEqual(b);
    expect(a).toEqual(c);
    expect(obj).toEqual({ ...Z2, gradient_accumulation_steps: 'auto', train_batch_size: 'auto' });
  });

  it('a config that does not load names the field', () => {
    expect(() => resolveDeepSpeedConfig({ user: { hfDsConfig: '/no/such/ds.json' } })).toThrow(/hfDsConfig in deepspeed\(\{\.\.\.\}\) is "\/no\/such\/ds.json": it is neither an existing file/);
    const { sections } = resolveSections({ env: { ACCELERATE_DEEPSPEED_CONFIG_FILE: '/no/such/ds.json' }, file: null });
    expect(() => resolveDeepSpeedConfig({ section: sections.deepspeed })).toThrow(/ACCELERATE_DEEPSPEED_CONFIG_FILE \(environment\)/);
  });

  it('toDeepSpeedJson keeps steps_per_print = Infinity readable by Python\'s json', () => {
    const text = toDeepSpeedJson(resolveDeepSpeedConfig().config);
    expect(text).toContain('"steps_per_print":Infinity');
    expect(JSON.stringify(resolveDeepSpeedConfig().config)).toContain('"steps_per_print":null');
  });

  it('fillAuto does not modify its input', () => {
    const plan = resolveDeepSpeedConfig();
    const before = JSON.stringify(plan.config);
    fillAuto(plan, { loaderBatchSizes: [8], numProcesses: 2, gradientAccumulationSteps: 1 });
    expect(JSON.stringify(plan.config)).toBe(before);
  });

  it('validateDeepSpeedLaunchConfig: the launcher\'s view (file fields shadowed by a DeepSpeed config, world known)', () => {
    const file = dsFile({ ...Z2, gradient_accumulation_steps: 2, train_micro_batch_size_per_gpu: 4, train_batch_size: 8 });
    const FILE = '/cfg/default_config.yaml';
    const { sections } = resolveSections({ env: {}, file: { path: FILE, config: { deepspeed_config: { deepspeed_config_file: file, zero_stage: 3 } } } });
    const problems = validateDeepSpeedLaunchConfig({ section: sections.deepspeed, numProcesses: 2 });
    expect(problems.join('\n')).toMatch(/must not also set zero_stage/);
    expect(problems.join('\n')).toMatch(/train_batch_size is 8 .* = 16/);
    const ok = resolveSections({ env: {}, file: { path: FILE, config: { deepspeed_config: { deepspeed_config_file: file } } } });
    expect(validateDeepSpeedLaunchConfig({ section: ok.sections.deepspeed, numProcesses: 1 })).toEqual([]);
  });
});
