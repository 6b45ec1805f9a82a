/**
 * Shared by bench/big-model-load.ts and bench/disk-offload.ts: a sharded fp32
 * safetensors checkpoint of an nn.Sequential of `layers` Linear(width, width)
 * (names `0.weight`, `0.bias`, …, as PyTorch's Sequential), written with
 * core's safetensors writer in Accelerate's layout (shards + index.json).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostTensor, pythonJsonDumps, writeSafetensors } from '../packages/core/src/internal.js';

export interface Fixture {
  dir: string;
  layers: number;
  width: number;
  bytes: number;
}

/** Deterministic uniform values in [-a, a) (xorshift32). */
function fill(data: Float32Array, seed: number, a: number): void {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    data[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * a;
  }
}

/** Create (or reuse) the checkpoint at `dir`. */
export async function makeCheckpoint(dir: string, layers: number, width: number, layersPerShard: number): Promise<Fixture> {
  const bytes = layers * (width * width + width) * 4;
  const done = join(dir, 'model.safetensors.index.json');
  if (existsSync(done)) {
    const idx = JSON.parse(readFileSync(done, 'utf8')) as { metadata: { total_size: number } };
    if (idx.metadata.total_size === bytes) return { dir, layers, width, bytes };
  }
  mkdirSync(dir, { recursive: true });
  const nShards = Math.ceil(layers / layersPerShard);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < nShards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(nShards).padStart(5, '0')}.safetensors`;
    const tensors = new Map<string, HostTensor>();
    for (let l = s * layersPerShard; l < Math.min(layers, (s + 1) * layersPerShard); l++) {
      const w = new Float32Array(width * width);
      fill(w, 1000 + l, 1 / Math.sqrt(width));
      const b = new Float32Array(width);
      fill(b, 5000 + l, 0.01);
      tensors.set(`${l}.weight`, new HostTensor(w, [width, width], 'float32'));
      tensors.set(`${l}.bias`, new HostTensor(b, [width], 'float32'));
      weightMap[`${l}.weight`] = file;
      weightMap[`${l}.bias`] = file;
    }
    await writeSafetensors(join(dir, file), tensors, { format: 'pt' });
  }
  writeFileSync(done, pythonJsonDumps({ metadata: { total_size: bytes }, weight_map: weightMap }, 2) + '\n');
  return { dir, layers, width, bytes };
}

/** Python that builds the same model on meta (accelerate's init_empty_weights). */
export const PY_MODEL = (layers: number, width: number) => `
import torch, torch.nn as nn
from accelerate import init_empty_weights
with init_empty_weights():
    model = nn.Sequential(*[nn.Linear(${width}, ${width}) for _ in range(${layers})])
`;

/**
 * Run one measurement in its own process (so its peak RSS is its own) and
 * parse the last line it prints as JSON.
 */
export function runChild<M>(cmd: string, args: string[]): M {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, OMP_NUM_THREADS: '2' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 2).join(' ')} failed (${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as M;
}

/** Best of N: the smallest value of each of `keys`, the `keep` fields of the first run, and every run. */
export function bestOf<M, K extends keyof M, F extends keyof M>(runs: M[], keys: K[], keep: F[]): (Record<K, number> & Pick<M, F> & { runs: M[] }) | undefined {
  if (runs.length === 0) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k as string] = Math.min(...runs.map((r) => r[k] as number));
  for (const f of keep) out[f as string] = runs[0][f];
  return { ...out, runs } as Record<K, number> & Pick<M, F> & { runs: M[] };
}

/** The Python with accelerate, torch and psutil to compare against: ACCELERATE_TS_PYTHON, else the repo's .venv-py; undefined when absent. */
export function findPython(root: string): string | undefined {
  const venv = join(root, '.venv-py/bin/python');
  const py = process.env.ACCELERATE_TS_PYTHON ?? (existsSync(venv) ? venv : undefined);
  if (!py) return undefined;
  return spawnSync(py, ['-c', 'import accelerate, torch, psutil'], { encoding: 'utf8' }).status === 0 ? py : undefined;
}
