/**
 * Shared by the FSDP benchmark (bench/fsdp.ts), its per-rank training script
 * (bench/fsdp-train.ts) and the parity test (tests/fsdp-python-parity.test.ts):
 * the two models (built with @accelerate/backend-libtorch's nn, parameter names
 * identical to the torch models of bench/python/fsdp_reference.py), the generator
 * of the initial weights and the data (safetensors), the runners of both sides
 * on N local processes (torchrun's variables), and the comparisons.
 *
 *   mlp          Sequential(Linear(512,1024), ReLU, Linear(1024,1024), ReLU, Linear(1024,10)),
 *                cross entropy; 1.6M parameters (6.4 MB fp32: communication matters)
 *   transformer  [B, 16, 64] -> 2 x TransformerEncoderLayer(64, 4 heads, ff 128, dropout 0,
 *                batch first, post-norm, relu) -> mean over the sequence -> Linear(64, 4), cross entropy
 *
 * Step s of every run uses global batch s % n of the data file (inputs [n, G, ...]
 * float32, targets [n, G] int64); rank r takes rows [r*b, (r+1)*b), b = G / world.
 * @module
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Torch from '@accelerate/backend-libtorch';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const PY_REFERENCE = join(ROOT, 'bench/python/fsdp_reference.py');
export const TRAIN_SCRIPT = join(ROOT, 'bench/fsdp-train.ts');
export const PLUGIN_SRC = join(ROOT, 'packages/plugin-fsdp/src/index.ts');

export type ModelName = 'mlp' | 'transformer';
export type Sharding = 'FULL_SHARD' | 'SHARD_GRAD_OP' | 'NO_SHARD';

export const MLP_SIZES = [512, 1024, 1024, 10] as const;
export const TF = { dModel: 64, nhead: 4, dimFeedforward: 128, seq: 16, classes: 4, layers: 2 } as const;

/** Global batch (all ranks together) of each model. */
export const GLOBAL_BATCH: Record<ModelName, number> = { mlp: 64, transformer: 32 };

/** Builds `name` with backend-libtorch (the caller seeds its RNG). */
export function buildModel(torch: typeof Torch, name: ModelName): Torch.nn.Module {
  const { nn } = torch;
  if (name === 'mlp') {
    const [a, b, c, d] = MLP_SIZES;
    return new nn.Sequential(new nn.Linear(a, b), new nn.ReLU(), new nn.Linear(b, c), new nn.ReLU(), new nn.Linear(c, d));
  }
  class Transformer extends nn.Module {
    // Field order = torch's registration order: layers.{0,1}.*, then head.*
    layers = new nn.ModuleList(
      Array.from({ length: TF.layers }, () => new nn.TransformerEncoderLayer(TF.dModel, TF.nhead, { dimFeedforward: TF.dimFeedforward, dropout: 0, batchFirst: true })),
    );
    head = new nn.Linear(TF.dModel, TF.classes);
    forward(x: Torch.Tensor): Torch.Tensor {
      return torch.tidy(() => {
        let h = x;
        for (const layer of this.layers) h = (layer as Torch.nn.TransformerEncoderLayer).forward(h);
        return this.head.forward(h.mean(1));
      });
    }
  }
  return new Transformer();
}

/**
 * Writes `<dir>/<name>-init.safetensors` (the model built after manualSeed(seed)) and
 * `<dir>/<name>-data.safetensors` (`batches` global batches from the same RNG stream).
 */
export async function generate(torch: typeof Torch, dir: string, name: ModelName, seed: number, batches: number): Promise<{ init: string; data: string }> {
  const { writeSafetensors } = await import('@accelerate/core');
  const backend = new torch.LibtorchBackend();
  torch.manualSeed(seed);
  const model = buildModel(torch, name);
  const init = join(dir, `${name}-init.safetensors`);
  const data = join(dir, `${name}-data.safetensors`);
  const sd = model.stateDict();
  await writeSafetensors(init, Object.fromEntries(Object.entries(sd).map(([k, v]) => [k, backend.toHost(v)])));
  const G = GLOBAL_BATCH[name];
  const inputs = name === 'mlp' ? torch.randn([batches, G, MLP_SIZES[0]]) : torch.randn([batches, G, TF.seq, TF.dModel]);
  const targets = torch.randint(0, name === 'mlp' ? MLP_SIZES[3] : TF.classes, [batches, G]);
  await writeSafetensors(data, { inputs: backend.toHost(inputs), targets: backend.toHost(targets) });
  return { init, data };
}

/** Reads a safetensors file into name -> Float64 values and shape (for comparisons). */
export async function readTensors(path: string): Promise<Record<string, { shape: readonly number[]; data: ArrayLike<number> }>> {
  const { parseSafetensors } = await import('@accelerate/core');
  const t = parseSafetensors(readFileSync(path)).tensors();
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, { shape: v.shape, data: v.data as ArrayLike<number> }]));
}

/**
 * Max |a - b| of the final parameters of two runs (every key in both, same shapes): `all` over every
 * element, `excludingKeyBias` without the key-projection bias of attention (the middle third of
 * `*.self_attn.in_proj_bias`), `keyBias` over that slice alone. Its gradient is zero in exact
 * arithmetic (softmax ignores a constant added to every score of a row, and q·b_k is one), so what
 * each side computes there is rounding noise (~1e-9), which AdamW's normalisation turns into updates
 * of up to lr·|g|/(|g| + eps): two correct implementations drift apart there by ~lr/10 per step,
 * one libtorch against another (torch 1.13 vs 2.13: the same) as much as ours against torch.
 */
export async function paramDiffs(a: string, b: string): Promise<{ all: number; excludingKeyBias: number; keyBias: number }> {
  const [ta, tb] = await Promise.all([readTensors(a), readTensors(b)]);
  const ka = Object.keys(ta).sort();
  const kb = Object.keys(tb).sort();
  if (ka.join() !== kb.join()) throw new Error(`parameter names differ:\n  ${a}: ${ka.join(', ')}\n  ${b}: ${kb.join(', ')}`);
  let rest = 0;
  let keyBias = 0;
  for (const k of ka) {
    const x = ta[k]!;
    const y = tb[k]!;
    if (x.shape.join() !== y.shape.join()) throw new Error(`${k}: shape [${x.shape}] vs [${y.shape}]`);
    const n = x.data.length;
    const isKeyBias = (i: number) => k.endsWith('self_attn.in_proj_bias') && i >= n / 3 && i < (2 * n) / 3;
    for (let i = 0; i < n; i++) {
      const d = Math.abs(x.data[i]! - y.data[i]!);
      if (isKeyBias(i)) keyBias = Math.max(keyBias, d);
      else rest = Math.max(rest, d);
    }
  }
  return { all: Math.max(rest, keyBias), excludingKeyBias: rest, keyBias };
}

export function maxCurveDiff(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`loss curves of ${a.length} and ${b.length} steps`);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
}

/** The Python with torch: $ACCELERATE_TS_PYTHON, else <repo>/.venv-py/bin/python; or why there is none. */
export function findPython(): { python?: string; torch?: string; reason?: string } {
  const venv = join(ROOT, '.venv-py/bin/python');
  const python = process.env.ACCELERATE_TS_PYTHON || (existsSync(venv) ? venv : undefined);
  if (!python) return { reason: `no ACCELERATE_TS_PYTHON and no ${venv} (scripts/setup-python.sh makes it)` };
  const r = spawnSync(python, ['-c', 'import torch, safetensors, torch.distributed.fsdp; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) return { reason: `${python} cannot import torch, safetensors and torch.distributed.fsdp: ${(r.stderr || '').trim().split('\n').pop()}` };
  return { python, torch: r.stdout.trim() };
}

/**
 * Whether `@accelerate/plugin-fsdp` exports `fsdp`: $ACCELERATE_TS_FSDP_PLUGIN (a module path, to
 * try another build) when set, else the built package (`import('@accelerate/plugin-fsdp')`: dist,
 * through the package's exports), else its source (packages/plugin-fsdp/src/index.ts, under tsx).
 * The training script resolves it the same way.
 */
export async function loadFsdpPlugin(): Promise<{ fsdp?: (options?: Record<string, unknown>) => unknown; from?: string; reason?: string }> {
  const reasons: string[] = [];
  const override = process.env.ACCELERATE_TS_FSDP_PLUGIN;
  const candidates: Array<readonly [string, string]> = override
    ? [[override, `ACCELERATE_TS_FSDP_PLUGIN=${override}`]]
    : [
        ['@accelerate/plugin-fsdp', '@accelerate/plugin-fsdp (dist)'],
        [PLUGIN_SRC, 'packages/plugin-fsdp/src/index.ts'],
      ];
  for (const [spec, from] of candidates) {
    try {
      const mod = (await import(spec)) as { fsdp?: unknown };
      if (typeof mod.fsdp === 'function') return { fsdp: mod.fsdp as (options?: Record<string, unknown>) => unknown, from };
      reasons.push(`${from} does not export fsdp`);
    } catch (e) {
      reasons.push(`${from}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return { reason: `plugin not built (${reasons.join('; ')})` };
}

/** One thread per process on every side (OpenMP, OpenBLAS, MKL; torch.set_num_threads(1) in both scripts). */
export const THREAD_ENV = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1', OMP_WAIT_POLICY: 'PASSIVE' };

/** What one run reports (rank 0's --out json). */
export interface RunOutput {
  side: 'python' | 'ts';
  mode: string;
  model: ModelName;
  sharding?: string;
  world: number;
  steps: number;
  warmup: number;
  stepsPerSec: number;
  losses: number[];
  params: string;
  torch?: string;
  strategy?: string;
  skipped?: string;
  /** accelerate-ts runs: allocator bytes of every rank (bench/fsdp-train.ts). */
  memory?: { gcExposed: boolean; ranks: Array<{ rank: number; baseline: number; afterTraining: number; beforePeakStep: number; stepPeak: number }> };
  /** accelerate-ts runs under FSDP_BENCH_PROFILE=1: rank 0's ms per timed step by operation. */
  profile?: Record<string, { msPerStep: number; callsPerStep: number }>;
  /** Under FSDP_BENCH_PROFILE=1: rank 0's allocated bytes after each timed operation of the last timed step. */
  memTrace?: Array<[string, number]>;
}

/**
 * Runs `cmd args` as `world` ranks with torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT, …) and resolves with rank 0's --out json.
 */
export async function runRanks(cmd: string, args: string[], world: number, out: string, extraEnv: Record<string, string> = {}, timeoutMs = 240_000): Promise<RunOutput> {
  const { findFreePort } = await import('@accelerate/core/internal');
  const port = await findFreePort('127.0.0.1');
  const children: ReturnType<typeof spawn>[] = [];
  const timer = setTimeout(() => children.forEach((c) => c.kill('SIGKILL')), timeoutMs);
  try {
    await Promise.all(
      Array.from(
        { length: world },
        (_, rank) =>
          new Promise<void>((resolve, reject) => {
            const env: Record<string, string | undefined> = { ...process.env };
            for (const k of Object.keys(env)) if (/^(ACCELERATE_(?!TS_PYTHON|TORCH_ADDON|TS_FSDP_PLUGIN)|FSDP_|VITEST|NODE_OPTIONS$)/.test(k)) delete env[k];
            Object.assign(env, THREAD_ENV, extraEnv, {
              RANK: String(rank),
              LOCAL_RANK: String(rank),
              WORLD_SIZE: String(world),
              LOCAL_WORLD_SIZE: String(world),
              GROUP_RANK: '0',
              MASTER_ADDR: '127.0.0.1',
              MASTER_PORT: String(port),
              GLOO_SOCKET_IFNAME: 'lo',
            });
            const p = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
            children.push(p);
            let so = '';
            let se = '';
            p.stdout!.on('data', (d) => (so += d));
            p.stderr!.on('data', (d) => (se += d));
            p.on('close', (code, signal) =>
              code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: rank ${rank} exited ${code ?? signal}\n${(so + se).slice(-3000)}`)),
            );
          }),
      ),
    );
  } finally {
    clearTimeout(timer);
  }
  return JSON.parse(readFileSync(out, 'utf8')) as RunOutput;
}

export interface RunSpec {
  model: ModelName;
  init: string;
  data: string;
  steps: number;
  warmup: number;
  lr: number;
  world: number;
  out: string;
  /** adamw (default) or sgd (momentum 0.9; sees the gradients' scale, which AdamW ignores). */
  optim?: 'adamw' | 'sgd';
}

export function runPython(python: string, mode: 'ddp' | 'fsdp1' | 'fsdp2', sharding: Sharding, s: RunSpec): Promise<RunOutput> {
  const args = [PY_REFERENCE, '--model', s.model, '--mode', mode, '--sharding', sharding, '--init', s.init, '--data', s.data, '--steps', String(s.steps), '--warmup', String(s.warmup), '--lr', String(s.lr), '--optim', s.optim ?? 'adamw', '--out', s.out];
  return runRanks(python, args, s.world, s.out);
}

/** accelerate-ts: `ddp` = the built-in strategy; `fsdp` = `new Accelerator({ plugins: [fsdp({ shardingStrategy })] })`. */
export function runTs(mode: 'ddp' | 'fsdp', sharding: Sharding, s: RunSpec, extraEnv: Record<string, string> = {}): Promise<RunOutput> {
  const args = ['--expose-gc', '--import', 'tsx', TRAIN_SCRIPT, '--model', s.model, '--mode', mode, '--sharding', sharding, '--init', s.init, '--data', s.data, '--steps', String(s.steps), '--warmup', String(s.warmup), '--lr', String(s.lr), '--optim', s.optim ?? 'adamw', '--out', s.out];
  return runRanks(process.execPath, args, s.world, s.out, extraEnv);
}
