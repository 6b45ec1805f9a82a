/**
 * Shared by bench/big-model-load.ts and bench/disk-offload.ts: a sharded fp32
 * safetensors checkpoint of an nn.Sequential of `layers` Linear(width, width)
 * (names `0.weight`, `0.bias`, …, as PyTorch's Sequential), written with
 * core's safetensors writer in Accelerate's layout (shards + index.json).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostTensor, pythonJsonDumps, writeSafetensors } from '../packages/core/src/index.js';

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
