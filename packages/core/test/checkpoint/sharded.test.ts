// Sharded tensor sets (FSDP checkpoints): written by 2 ranks through the real saveState driver
// (a writers: 'every' participant, in-memory process groups, shared folder), read back at world
// sizes 1..4 bit-exactly, through the loadState reader and from a plain path; damaged, missing and
// inconsistent files; merging into model.safetensors.
import { describe, it, expect, beforeEach, afterAll } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { gatherObject } from '../../src/ops/collectives.js';
import { hostTensorOps } from '../../src/ops/tensor-ops.js';
import type { CheckpointParticipant, CheckpointReader, CheckpointWriter } from '../../src/interfaces/checkpoint.js';
import { loadAcceleratorState, saveAcceleratorState, type CheckpointHost } from '../../src/checkpoint/save-state.js';
import { ReferenceBackend, RegressionModel, SeededRandom, createInMemoryGroups } from '../../src/testing/index.js';
import { HostTensor, type DType } from '../../src/tensor/host-tensor.js';
import {
  SHARDED_INDEX_NAME,
  evenShardRange,
  mergeShardedWeights,
  openShardedTensors,
  shardedFileName,
  writeShardedTensors,
  type ShardedPiece,
} from '../../src/checkpoint/sharded.js';
import { SafetensorsFile, serializeSafetensors, writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { loadModelFiles, splitStateDictIntoShards } from '../../src/checkpoint/save-model.js';
import { randomTensor, hexOf } from './helpers.js';

const roots: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'acc-sharded-'));
  roots.push(d);
  return d;
};
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

beforeEach(async () => {
  await AcceleratorState.resetState();
});

const rng = new SeededRandom(7);
/** The full tensors of the set: every dtype the brief names, odd sizes, a scalar, an empty tensor, a 1-element tensor. */
const FULL: Record<string, HostTensor> = {
  'embed.weight': randomTensor(rng, 'bfloat16', [5, 7]),
  'layers.0.bias': randomTensor(rng, 'float16', [3]),
  'layers.0.weight': randomTensor(rng, 'float32', [4, 3, 2]),
  'buffers.positions': randomTensor(rng, 'int64', [10]),
  'scale': randomTensor(rng, 'float32', []),
  'empty': randomTensor(rng, 'float32', [0, 4]),
  'one': randomTensor(rng, 'float16', [1]),
};
const TENSORS = Object.fromEntries(Object.entries(FULL).map(([n, t]) => [n, { shape: [...t.shape], dtype: t.dtype }]));

/** Elements [offset, offset+numel) of a full tensor, flat. */
function slice(t: HostTensor, offset: number, numel: number): HostTensor {
  return new HostTensor(t.data.slice(offset, offset + numel) as HostTensor['data'], [numel], t.dtype);
}

/** Rank `rank`'s pieces of FULL under the even split (or `split`). */
function piecesOf(rank: number, world: number, split = evenShardRange, names = Object.keys(FULL)): ShardedPiece[] {
  return names.map((name) => {
    const t = FULL[name];
    const { offset, numel } = split(t.numel, rank, world);
    return { name, shape: [...t.shape], dtype: t.dtype, offset, data: slice(t, offset, numel) };
  });
}

/** Two in-process ranks of one prepared Accelerator (in-memory groups, shared folder), with `participant`. */
async function hostsFor(world: number, participant: CheckpointParticipant): Promise<CheckpointHost[]> {
  const acc = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {} });
  await acc.prepare(new RegressionModel({ a: 1, b: 2 }));
  const host = (acc as unknown as { checkpointHost(): CheckpointHost }).checkpointHost();
  const groups = createInMemoryGroups(world, { timeoutMs: 5000 });
  return groups.map(
    (group, rank): CheckpointHost => ({
      ...host,
      processIndex: rank,
      numProcesses: world,
      isMainProcess: rank === 0,
      participants: [participant],
      step: 0,
      gatherObject: <E>(obj: E[]) => gatherObject<E>(obj, { group, ops: hostTensorOps, numProcesses: world, processIndex: rank }),
    }),
  );
}

const EXTRA = { param_groups: [{ lr: 0.1, betas: [0.9, 0.999] }], step: 3 };

/** A participant writing FULL as a sharded set in `folder` (rank r: `pieces(r, world)`), and reading with `onRead`. */
function shardedParticipant(folder: string, pieces: (rank: number, world: number) => ShardedPiece[], onRead?: (r: CheckpointReader) => Promise<void>): CheckpointParticipant {
  return {
    name: 'fsdp-model',
    writers: 'every',
    async save(w: CheckpointWriter) {
      await writeShardedTensors(w, folder, pieces(w.processIndex, w.numProcesses), { tensors: TENSORS, extra: EXTRA });
    },
    async read(r) {
      await onRead?.(r);
      return () => {};
    },
  };
}

/** A checkpoint saved by 2 ranks with FULL in pytorch_model_fsdp_0. */
async function savedCheckpoint(pieces: (rank: number, world: number) => ShardedPiece[] = piecesOf): Promise<string> {
  const dir = join(tmp(), 'ckpt');
  const hosts = await hostsFor(2, shardedParticipant('pytorch_model_fsdp_0', pieces));
  await Promise.all(hosts.map((h) => saveAcceleratorState(h, dir)));
  await AcceleratorState.resetState();
  return dir;
}

const hex = (t: HostTensor) => `${t.dtype}[${t.shape.join(',')}]:${hexOf(t)}`;

describe('writeShardedTensors / openShardedTensors', () => {
  it('2 ranks write shard-<r>-of-2.safetensors with pieces metadata and an index; the manifest lists both', async () => {
    const dir = await savedCheckpoint();
    const folder = join(dir, 'pytorch_model_fsdp_0');
    expect(readdirSync(folder).sort()).toEqual([SHARDED_INDEX_NAME, 'shard-0-of-2.safetensors', 'shard-1-of-2.safetensors']);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(Object.keys(manifest.files)).toEqual(
      expect.arrayContaining(['pytorch_model_fsdp_0/index.json', 'pytorch_model_fsdp_0/shard-0-of-2.safetensors', 'pytorch_model_fsdp_0/shard-1-of-2.safetensors']),
    );
    const index = JSON.parse(readFileSync(join(folder, SHARDED_INDEX_NAME), 'utf8'));
    expect(index).toEqual({
      format: 'accelerate-ts-sharded',
      version: 1,
      worldSize: 2,
      files: ['shard-0-of-2.safetensors', 'shard-1-of-2.safetensors'],
      tensors: TENSORS,
      extra: EXTRA,
    });
    const f1 = await SafetensorsFile.open(join(folder, 'shard-1-of-2.safetensors'));
    try {
      expect(f1.metadata!.format).toBe('pt');
      expect(f1.metadata!.accelerate_sharded).toBe('1');
      const pieces = JSON.parse(f1.metadata!.pieces);
      expect(pieces['embed.weight']).toEqual({ shape: [5, 7], dtype: 'bfloat16', offset: 18, numel: 17 });
      // Empty pieces are left out: rank 1 holds nothing of 'scale' (1 element), 'one' or 'empty'.
      expect(Object.keys(pieces).sort()).toEqual(['buffers.positions', 'embed.weight', 'layers.0.bias', 'layers.0.weight']);
      expect(f1.keys()).toEqual(Object.keys(pieces).sort());
      expect(f1.info('buffers.positions')).toMatchObject({ dtype: 'I64', shape: [5] });
      expect(hex(await f1.read('embed.weight'))).toBe(hex(slice(FULL['embed.weight'], 18, 17)));
    } finally {
      await f1.close();
    }
  });

  it('reads back bit-exactly at world sizes 1, 2, 3 and 4 (every rank its range), plus ranges across file boundaries and whole tensors', async () => {
    const dir = await savedCheckpoint();
    const set = await openShardedTensors(dir, 'pytorch_model_fsdp_0');
    expect(set.worldSize).toBe(2);
    expect(set.tensors).toEqual(TENSORS);
    expect(set.extra).toEqual(EXTRA);
    for (const world of [1, 2, 3, 4]) {
      for (let rank = 0; rank < world; rank++) {
        for (const [name, t] of Object.entries(FULL)) {
          const { offset, numel } = evenShardRange(t.numel, rank, world);
          const got = await set.read(name, offset, numel);
          expect(hex(got), `${name} rank ${rank}/${world}`).toBe(hex(slice(t, offset, numel)));
        }
      }
    }
    // Every (offset, numel) of a tensor split 18 | 17 between the files.
    const t = FULL['embed.weight'];
    for (let offset = 0; offset <= t.numel; offset += 3) {
      for (const numel of [0, 1, 5, 17, t.numel - offset]) {
        if (offset + numel > t.numel) continue;
        expect(hex(await set.read('embed.weight', offset, numel))).toBe(hex(slice(t, offset, numel)));
      }
    }
    for (const [name, full] of Object.entries(FULL)) expect(hex(await set.readFull(name)), name).toBe(hex(full));
    await expect(set.read('embed.weight', 30, 6)).rejects.toThrow(/elements \[30, 36\) of "embed\.weight" are outside the tensor \(\[5, 7\], 35 elements\)/);
    await expect(set.readFull('nope')).rejects.toThrow(/no tensor "nope" in sharded set .*pytorch_model_fsdp_0; it has 7: "embed\.weight"/);
  });

  it('loads through the loadState reader (manifest-verified) on 2 ranks and on 3 ranks (resharding)', async () => {
    const dir = await savedCheckpoint();
    for (const world of [2, 3]) {
      const seen: string[] = [];
      const hosts = await hostsFor(
        world,
        shardedParticipant('pytorch_model_fsdp_0', piecesOf, async (r) => {
          const set = await openShardedTensors(r, 'pytorch_model_fsdp_0');
          expect(set.extra).toEqual(EXTRA);
          for (const [name, t] of Object.entries(FULL)) {
            const { offset, numel } = evenShardRange(t.numel, r.processIndex, r.numProcesses);
            expect(hex(await set.read(name, offset, numel))).toBe(hex(slice(t, offset, numel)));
          }
          seen.push(`rank ${r.processIndex}/${r.numProcesses} saved by ${r.savedWorldSize}`);
        }),
      );
      const results = await Promise.all(hosts.map((h) => loadAcceleratorState(h, dir)));
      expect(seen.sort()).toEqual(Array.from({ length: world }, (_, r) => `rank ${r}/${world} saved by 2`));
      if (world === 2) expect(results.map((r) => r.warnings)).toEqual([[], []]);
      await AcceleratorState.resetState();
    }
  });

  it('uneven splits (rank 1 holds everything of some tensors, rank 0 of others) read the same', async () => {
    const lopsided = (numel: number, rank: number) => {
      const cut = numel % 2 === 0 ? 0 : numel; // even sizes all on rank 1, odd ones all on rank 0
      return rank === 0 ? { offset: 0, numel: cut } : { offset: cut, numel: numel - cut };
    };
    const dir = await savedCheckpoint((rank, world) => piecesOf(rank, world, lopsided));
    const set = await openShardedTensors(dir, 'pytorch_model_fsdp_0');
    for (const [name, full] of Object.entries(FULL)) expect(hex(await set.readFull(name)), name).toBe(hex(full));
  });
});

describe('sharded sets that are incomplete, damaged or inconsistent', () => {
  /** A copy of a saved checkpoint to damage. */
  let pristine: string | undefined;
  async function copy(): Promise<string> {
    pristine ??= await savedCheckpoint();
    const d = join(tmp(), 'copy');
    cpSync(pristine, d, { recursive: true });
    return d;
  }

  it('a missing shard file is named, with the ranks whose files exist', async () => {
    const dir = await copy();
    unlinkSync(join(dir, 'pytorch_model_fsdp_0', 'shard-1-of-2.safetensors'));
    for (const source of [dir]) {
      await expect(openShardedTensors(source, 'pytorch_model_fsdp_0')).rejects.toThrow(
        /Sharded set .*pytorch_model_fsdp_0 is incomplete: pytorch_model_fsdp_0\/shard-1-of-2\.safetensors is missing .*written by 2 ranks; files exist for rank 0\. The checkpoint is incomplete/,
      );
    }
    // Without a manifest (a plain folder) too.
    unlinkSync(join(dir, 'manifest.json'));
    await expect(openShardedTensors(dir, 'pytorch_model_fsdp_0')).rejects.toThrow(/shard-1-of-2\.safetensors is missing\. It was written by 2 ranks; files exist for rank 0/);
  });

  it('a damaged byte fails the read that needs the file (sha256 against the manifest), not reads of other files', async () => {
    const dir = await copy();
    const f = join(dir, 'pytorch_model_fsdp_0', 'shard-1-of-2.safetensors');
    const bytes = readFileSync(f);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(f, bytes);
    const set = await openShardedTensors(dir, 'pytorch_model_fsdp_0');
    const t = FULL['embed.weight'];
    expect(hex(await set.read('embed.weight', 0, 18))).toBe(hex(slice(t, 0, 18))); // rank 0's file only: lazy
    await expect(set.read('embed.weight', 10, 20)).rejects.toThrow(/Checkpoint .* is corrupt: pytorch_model_fsdp_0\/shard-1-of-2\.safetensors has \d+ bytes with sha256/);
    // A damaged header fails the open.
    const g = join(dir, 'pytorch_model_fsdp_0', 'shard-0-of-2.safetensors');
    writeFileSync(g, Buffer.from('garbage!garbage!'));
    await expect(openShardedTensors(dir, 'pytorch_model_fsdp_0')).rejects.toThrow(/is corrupt: pytorch_model_fsdp_0\/shard-0-of-2\.safetensors/);
    unlinkSync(join(dir, 'manifest.json'));
    await expect(openShardedTensors(dir, 'pytorch_model_fsdp_0')).rejects.toThrow(/shard-0-of-2\.safetensors cannot be read as a shard \(.*\)\. The checkpoint is damaged/);
  });

  it('a folder that is not a sharded set says so and lists the sets the checkpoint has; shards without an index say the save did not finish', async () => {
    const dir = await copy();
    await expect(openShardedTensors(dir, 'pytorch_model_fsdp_1')).rejects.toThrow(
      /pytorch_model_fsdp_1 is not a sharded tensor set \(it has no index\.json\)\. A sharded set is a folder such as 'pytorch_model_fsdp_0' \(model 0\) or 'optimizer_0' .* has: 'pytorch_model_fsdp_0'\./,
    );
    unlinkSync(join(dir, 'manifest.json'));
    unlinkSync(join(dir, 'pytorch_model_fsdp_0', 'index.json'));
    await expect(openShardedTensors(dir, 'pytorch_model_fsdp_0')).rejects.toThrow(
      /holds shard files \(shard-0-of-2\.safetensors, shard-1-of-2\.safetensors\) but no index\.json: .*the checkpoint is incomplete/,
    );
    await expect(openShardedTensors(dir, '../x')).rejects.toThrow(/must be a relative folder name inside the checkpoint, e\.g\. "pytorch_model_fsdp_0"/);
  });

  it('pieces that leave a gap or overlap name the tensor and the elements', async () => {
    // Rank 1 starts its piece of layers.0.weight (24 elements, rank 0 holds [0, 12)) at 14: [12, 14) is nowhere.
    const gap = (rank: number, world: number) =>
      piecesOf(rank, world).map((p) => (rank === 1 && p.name === 'layers.0.weight' ? { ...p, offset: 14, data: slice(FULL['layers.0.weight'], 14, 10) } : p));
    const dir = await savedCheckpoint(gap);
    await expect(openShardedTensors(dir, 'pytorch_model_fsdp_0')).rejects.toThrow(
      /Sharded set .* is incomplete: elements \[12, 14\) of "layers\.0\.weight" \(\[4, 3, 2\] float32, 24 elements\) are in no shard file \(rank 0 \[0, 12\), rank 1 \[14, 24\)\)/,
    );
    const tail = (rank: number, world: number) => piecesOf(rank, world).filter((p) => !(rank === 1 && p.name === 'buffers.positions'));
    await expect(openShardedTensors(await savedCheckpoint(tail), 'pytorch_model_fsdp_0')).rejects.toThrow(
      /elements \[5, 10\) of "buffers\.positions" \(\[10\] int64, 10 elements\) are in no shard file \(rank 0 \[0, 5\)\)/,
    );
    const overlap = (rank: number, world: number) =>
      piecesOf(rank, world).map((p) => (rank === 1 && p.name === 'layers.0.bias' ? { ...p, offset: 1, data: slice(FULL['layers.0.bias'], 1, 2) } : p));
    await expect(openShardedTensors(await savedCheckpoint(overlap), 'pytorch_model_fsdp_0')).rejects.toThrow(/pieces of "layers\.0\.bias" overlap at elements \[1, 2\)/);
  });

  it('files that disagree with the index on a shape or dtype are refused', async () => {
    const dir = await copy();
    unlinkSync(join(dir, 'manifest.json'));
    const f = join(dir, 'pytorch_model_fsdp_0', 'shard-1-of-2.safetensors');
    const file = await SafetensorsFile.open(f);
    const tensors = await file.readAll();
    const pieces = JSON.parse(file.metadata!.pieces);
    await file.close();
    pieces['layers.0.weight'].shape = [4, 6]; // same numel, another shape: a different save
    await writeSafetensors(f, tensors, { format: 'pt', accelerate_sharded: '1', pieces: JSON.stringify(pieces) });
    await expect(openShardedTensors(dir, 'pytorch_model_fsdp_0')).rejects.toThrow(
      /disagrees on "layers\.0\.weight": index\.json says \[4, 3, 2\] float32, shard-1-of-2\.safetensors \(rank 1\) says \[4,6\] float32/,
    );
    pieces['layers.0.weight'].shape = [4, 3, 2];
    const asF32 = { ...tensors, 'layers.0.bias': new HostTensor(new Float32Array(1), [1], 'float32') };
    await writeSafetensors(f, asF32, { format: 'pt', accelerate_sharded: '1', pieces: JSON.stringify(pieces) });
    await expect(openShardedTensors(dir, 'pytorch_model_fsdp_0')).rejects.toThrow(/its piece of "layers\.0\.bias" is stored as F32 \[1\], but 1 elements of float16 \(F16 \[1\]\) were expected/);
  });

  it('writeShardedTensors refuses pieces that do not fit their tensor', async () => {
    const calls: string[] = [];
    const w: CheckpointWriter = {
      dir: tmp(),
      processIndex: 0,
      numProcesses: 2,
      isMainProcess: true,
      async writeTensors(file) {
        calls.push(file);
      },
      async writeState() {},
      async writeFile(file) {
        calls.push(file);
      },
      record() {},
    };
    const ok = piecesOf(0, 2);
    const bad = async (p: Partial<ShardedPiece>, pattern: RegExp) =>
      expect(writeShardedTensors(w, 'pytorch_model_fsdp_0', [{ ...ok[2], ...p }], { tensors: TENSORS })).rejects.toThrow(pattern);
    await bad({ offset: 20 }, /piece "layers\.0\.weight" of rank 0 covers elements \[20, 32\) but the tensor \[4, 3, 2\] has 24/);
    await bad({ name: 'other' }, /piece "other" is not in index\.tensors/);
    await bad({ dtype: 'float16' as DType }, /piece "layers\.0\.weight" says \[4,3,2\] float16 but index\.tensors says \[4, 3, 2\] float32/);
    await bad({ data: slice(FULL['embed.weight'], 0, 3) }, /holds bfloat16 data but the tensor is float32/);
    await expect(writeShardedTensors(w, 'pytorch_model_fsdp_0', [ok[0], ok[0]], { tensors: TENSORS })).rejects.toThrow(/two pieces of "embed\.weight"/);
    expect(calls).toEqual([]);
    await writeShardedTensors(w, 'optimizer_0', ok, { tensors: TENSORS });
    expect(calls).toEqual([`optimizer_0/${shardedFileName(0, 2)}`, 'optimizer_0/index.json']);
  });
});

describe('mergeShardedWeights', () => {
  it('writes model.safetensors with the full tensors, byte-identical to serializeSafetensors of them', async () => {
    const dir = await savedCheckpoint();
    const out = join(tmp(), 'merged');
    const r = await mergeShardedWeights(dir, out);
    expect(r).toMatchObject({ source: join(dir, 'pytorch_model_fsdp_0'), worldSize: 2, files: ['model.safetensors'], tensors: 7, removedCheckpointDir: false });
    expect(Buffer.from(readFileSync(join(out, 'model.safetensors'))).equals(Buffer.from(serializeSafetensors(FULL, { format: 'pt' })))).toBe(true);
    // The set folder itself works too, and the checkpoint stays.
    const out2 = join(tmp(), 'merged2');
    await mergeShardedWeights(join(dir, 'pytorch_model_fsdp_0'), out2);
    expect(readFileSync(join(out2, 'model.safetensors')).equals(readFileSync(join(out, 'model.safetensors')))).toBe(true);
    expect(existsSync(dir)).toBe(true);
  });

  it('shards the output above maxShardSize like saveModelFiles, and removes the checkpoint when asked', async () => {
    const dir = await savedCheckpoint();
    const out = join(tmp(), 'merged');
    const r = await mergeShardedWeights(dir, out, { maxShardSize: 64, removeCheckpointDir: true });
    const split = splitStateDictIntoShards(FULL, { maxShardSize: 64 });
    expect(r.files).toEqual([...split.filenameToTensors.keys()]);
    expect(r.indexFile).toBe('model.safetensors.index.json');
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
    expect(index.weight_map).toEqual(Object.fromEntries(split.tensorToFilename));
    const loaded = await loadModelFiles(out);
    for (const [name, t] of Object.entries(FULL)) expect(hex(loaded[name]), name).toBe(hex(t));
    expect(r.removedCheckpointDir).toBe(true);
    expect(existsSync(dir)).toBe(false);
    // A second, unsharded merge into the same folder removes the earlier shards and index.
    const dir2 = await savedCheckpoint();
    const r2 = await mergeShardedWeights(dir2, out);
    expect(r2.deletedStaleFiles.sort()).toEqual([...r.files, 'model.safetensors.index.json'].sort());
    expect(readdirSync(out)).toEqual(['model.safetensors']);
  });

  it('refuses folders that are not sharded, and checkpoints with several model sets', async () => {
    const empty = tmp();
    await expect(mergeShardedWeights(empty, join(tmp(), 'o'))).rejects.toThrow(/is not a sharded checkpoint folder and holds no sharded model set\. Pass a folder such as 'pytorch_model_fsdp_0' or 'optimizer_0'/);
    const dir = await savedCheckpoint();
    cpSync(join(dir, 'pytorch_model_fsdp_0'), join(dir, 'pytorch_model_fsdp_1'), { recursive: true });
    await expect(mergeShardedWeights(dir, join(tmp(), 'o'))).rejects.toThrow(/holds 2 sharded model sets \(pytorch_model_fsdp_0, pytorch_model_fsdp_1\); pass the one to merge/);
    await expect(mergeShardedWeights(join(dir, 'pytorch_model_fsdp_0'), join(dir, 'pytorch_model_fsdp_0', 'out'), { removeCheckpointDir: true })).rejects.toThrow(/is inside .*which removeCheckpointDir would delete/);
  });
});
