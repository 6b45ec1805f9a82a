// `accelerate merge-weights`: a sharded set written by 2 ranks (writeShardedTensors through a
// plain-folder CheckpointWriter) merged into model.safetensors end to end through runCli, then
// loaded by loadModelFiles and by Python's safetensors + torch.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostTensor, evenShardRange, loadModelFiles, writeSafetensors, writeShardedTensors, type CheckpointWriter, type DType } from '@accelerate/core';
import { runCli } from '../../src/program.js';
import type { CliContext } from '../../src/context.js';

const root = mkdtempSync(join(tmpdir(), 'acc-merge-weights-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(root, `${name}-${n++}`);

function capture(): { ctx: Partial<CliContext>; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { ctx: { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: {}, stdinIsTTY: false }, out, err };
}

/** Deterministic tensors of the dtypes FSDP checkpoints hold. */
function tensor(dtype: DType, shape: number[], seed: number): HostTensor {
  const numel = shape.reduce((a, b) => a * b, 1);
  const vals = Array.from({ length: numel }, (_, i) => ((i * 7919 + seed * 104729) % 2003) - 1000);
  switch (dtype) {
    case 'float32':
      return new HostTensor(Float32Array.from(vals, (v) => v / 37), shape, dtype);
    case 'float16':
    case 'bfloat16':
      // Finite bit patterns (exponent below all-ones) for both 16-bit formats.
      return new HostTensor(Uint16Array.from(vals, (v) => (v & 0x3fff) | (v < 0 ? 0x8000 : 0)), shape, dtype);
    case 'int64':
      return new HostTensor(BigInt64Array.from(vals, (v) => BigInt(v) * 123456789012n), shape, dtype);
    default:
      throw new Error(dtype);
  }
}

const FULL: Record<string, HostTensor> = {
  'model.embed_tokens.weight': tensor('bfloat16', [11, 6], 1),
  'model.layers.0.mlp.weight': tensor('float32', [6, 5], 2),
  'model.layers.0.mlp.bias': tensor('float16', [5], 3),
  'model.norm.weight': tensor('float32', [6], 4),
  'model.position_ids': tensor('int64', [1, 9], 5),
  'lm_head.scale': tensor('float32', [], 6),
};

/** A CheckpointWriter over a plain folder (what saveState's writer does, minus the manifest). */
function folderWriter(dir: string, rank: number, world: number): CheckpointWriter {
  const full = (f: string) => {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    return join(dir, f);
  };
  return {
    dir,
    processIndex: rank,
    numProcesses: world,
    isMainProcess: rank === 0,
    writeTensors: (f, t, m) => writeSafetensors(full(f), t, { format: 'pt', ...m }),
    writeState: async () => {
      throw new Error('unused');
    },
    writeFile: async (f, d) => writeFileSync(full(f), d),
    record: () => {},
  };
}

/** A checkpoint folder with FULL in `folder`, written by `world` ranks. */
async function shardedCheckpoint(world = 2, folders = ['pytorch_model_fsdp_0']): Promise<string> {
  const dir = fresh('ckpt');
  const tensors = Object.fromEntries(Object.entries(FULL).map(([k, t]) => [k, { shape: [...t.shape], dtype: t.dtype }]));
  for (const folder of folders) {
    for (let rank = 0; rank < world; rank++) {
      const pieces = Object.entries(FULL).map(([name, t]) => {
        const { offset, numel } = evenShardRange(t.numel, rank, world);
        return { name, shape: [...t.shape], dtype: t.dtype, offset, data: new HostTensor(t.data.slice(offset, offset + numel) as HostTensor['data'], [numel], t.dtype) };
      });
      await writeShardedTensors(folderWriter(dir, rank, world), folder, pieces, { tensors });
    }
  }
  return dir;
}

const hex = (t: HostTensor) => `${t.dtype}[${t.shape.join(',')}]:${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex')}`;

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
const PYTHON = process.env.ACCELERATE_TS_PYTHON ?? join(REPO, '.venv-py/bin/python');
const pythonReason = (() => {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing (scripts/setup-python.sh creates it)`;
  const r = spawnSync(PYTHON, ['-c', 'import torch, safetensors'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${PYTHON} lacks torch or safetensors: ${(r.stderr || '').trim().split('\n').pop()}`;
})();

describe('accelerate merge-weights', () => {
  it('merges a checkpoint folder (picking pytorch_model_fsdp_0) into OUTPUT/model.safetensors with the full tensors', async () => {
    const dir = await shardedCheckpoint(2);
    const out = fresh('out');
    const { ctx, out: stdout, err } = capture();
    expect(await runCli(['merge-weights', dir, out], ctx)).toBe(0);
    expect(err.join('')).toBe('');
    expect(stdout.join('')).toMatch(new RegExp(`^Merged 6 tensor\\(s\\) \\(\\d+ bytes\\) of .*pytorch_model_fsdp_0, saved by 2 process\\(es\\), into ${out}: model\\.safetensors\\.\\n$`));
    expect(readdirSync(out)).toEqual(['model.safetensors']);
    const loaded = await loadModelFiles(out);
    expect(Object.keys(loaded).sort()).toEqual(Object.keys(FULL).sort());
    for (const [name, t] of Object.entries(FULL)) expect(hex(loaded[name]), name).toBe(hex(t));
    expect(existsSync(dir)).toBe(true);
  });

  it('takes the set folder itself, at another world size, and --remove-checkpoint-dir (either spelling) deletes it afterwards', async () => {
    const dir = await shardedCheckpoint(3);
    const out = fresh('out');
    const { ctx, out: stdout } = capture();
    expect(await runCli(['merge-weights', join(dir, 'pytorch_model_fsdp_0'), out, '--remove-checkpoint-dir'], ctx)).toBe(0);
    expect(stdout.join('')).toMatch(/saved by 3 process\(es\)[\s\S]*Removed .*pytorch_model_fsdp_0\.\n$/);
    expect(existsSync(join(dir, 'pytorch_model_fsdp_0'))).toBe(false);
    const loaded = await loadModelFiles(out);
    for (const [name, t] of Object.entries(FULL)) expect(hex(loaded[name]), name).toBe(hex(t));
  });

  it('--unsafe_serialization is refused (no pickles), naming the safetensors alternative; nothing is written', async () => {
    const dir = await shardedCheckpoint(2);
    const out = fresh('out');
    const { ctx, err } = capture();
    expect(await runCli(['merge-weights', dir, out, '--unsafe_serialization'], ctx)).toBe(1);
    expect(err.join('')).toMatch(/^accelerate: merge-weights: --unsafe_serialization asks for pytorch_model\.bin, a torch\.save pickle, which accelerate-ts does not write .*Drop the flag to get model\.safetensors/);
    expect(existsSync(out)).toBe(false);
  });

  it('explains folders that are not sharded checkpoints, several model sets, and missing shard files', async () => {
    const cases: Array<[string, RegExp]> = [];
    const empty = fresh('empty');
    mkdirSync(empty);
    cases.push([empty, /^accelerate: merge-weights: .* is not a sharded checkpoint folder and holds no sharded model set\. Pass a folder such as 'pytorch_model_fsdp_0' or 'optimizer_0'/]);
    cases.push([join(root, 'nope'), /^accelerate: merge-weights: .*nope is not a folder\. Pass a sharded checkpoint folder such as 'ckpt\/pytorch_model_fsdp_0'/]);
    const two = await shardedCheckpoint(2, ['pytorch_model_fsdp_0', 'pytorch_model_fsdp_1']);
    cases.push([two, /holds 2 sharded model sets \(pytorch_model_fsdp_0, pytorch_model_fsdp_1\); pass the one to merge, e\.g\. .*pytorch_model_fsdp_0\./]);
    const broken = await shardedCheckpoint(3);
    unlinkSync(join(broken, 'pytorch_model_fsdp_0', 'shard-1-of-3.safetensors'));
    cases.push([broken, /is incomplete: pytorch_model_fsdp_0\/shard-1-of-3\.safetensors is missing\. It was written by 3 ranks; files exist for ranks 0, 2\./]);
    for (const [dir, pattern] of cases) {
      const { ctx, err } = capture();
      expect(await runCli(['merge-weights', dir, fresh('out')], ctx), dir).toBe(1);
      expect(err.join(''), dir).toMatch(pattern);
    }
  });

  it('is listed in the help', async () => {
    const { ctx, out } = capture();
    expect(await runCli(['--help'], ctx)).toBe(0);
    expect(out.join('')).toMatch(/merge-weights \[options\] <checkpoint_directory> <output_path>/);
    const sub = capture();
    expect(await runCli(['merge-weights', '--help'], sub.ctx)).toBe(0);
    expect(sub.out.join('')).toMatch(/--unsafe_serialization[\s\S]*--remove_checkpoint_dir/);
  });

  it.skipIf(pythonReason !== undefined)("Python's safetensors.torch.load_file reads the merged file: names, shapes, dtypes and values", async () => {
    const dir = await shardedCheckpoint(2);
    const out = fresh('out');
    expect(await runCli(['merge-weights', dir, out], capture().ctx)).toBe(0);
    // The expected tensors, written independently by writeSafetensors from the unsharded originals.
    const expected = join(fresh('expected'), 'expected.safetensors');
    mkdirSync(dirname(expected));
    await writeSafetensors(expected, FULL);
    const py = String.raw`
import json, sys, torch
from safetensors import safe_open
from safetensors.torch import load_file
got, want = load_file(sys.argv[1]), load_file(sys.argv[2])
with safe_open(sys.argv[1], "pt") as f:
    meta = f.metadata()
print(json.dumps({
    "meta": meta,
    "names": sorted(got),
    "shapes": {k: list(v.shape) for k, v in got.items()},
    "dtypes": {k: str(v.dtype) for k, v in got.items()},
    "equal": all(torch.equal(got[k].view(torch.uint8) if got[k].dim() else got[k].reshape(1).view(torch.uint8), want[k].view(torch.uint8) if want[k].dim() else want[k].reshape(1).view(torch.uint8)) for k in want),
}))
`;
    const r = spawnSync(PYTHON, ['-c', py, join(out, 'model.safetensors'), expected], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(res.meta).toEqual({ format: 'pt' });
    expect(res.names).toEqual(Object.keys(FULL).sort());
    expect(res.shapes).toEqual(Object.fromEntries(Object.entries(FULL).map(([k, t]) => [k, [...t.shape]])));
    expect(res.dtypes).toEqual({
      'model.embed_tokens.weight': 'torch.bfloat16',
      'model.layers.0.mlp.weight': 'torch.float32',
      'model.layers.0.mlp.bias': 'torch.float16',
      'model.norm.weight': 'torch.float32',
      'model.position_ids': 'torch.int64',
      'lm_head.scale': 'torch.float32',
    });
    expect(res.equal).toBe(true);
  });
  if (pythonReason) console.log(`merge-weights: skipping the Python load check: ${pythonReason}`);
});
