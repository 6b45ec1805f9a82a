import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { SeededRandom } from '../../src/testing/prng.js';
import { parseSafetensors, serializeSafetensors, writeSafetensors } from '../../src/checkpoint/safetensors.js';
import {
  SAFE_WEIGHTS_INDEX_NAME,
  SAFE_WEIGHTS_NAME,
  loadModelFiles,
  pythonJsonDumps,
  resolveCheckpointFiles,
  saveModelFiles,
  splitStateDictIntoShards,
} from '../../src/checkpoint/save-model.js';
import { hexOf, randomTensor, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir('save-model-'));
});
afterEach(() => cleanup());

/** The state dict of Accelerate's test ModelForTest: Linear(3, 4), BatchNorm1d(4), Linear(4, 5). */
function modelForTestStateDict(seed = 0): Record<string, HostTensor> {
  const rng = new SeededRandom(seed);
  const f = (shape: number[]) => randomTensor(rng, 'float32', shape);
  return {
    'linear1.weight': f([4, 3]),
    'linear1.bias': f([4]),
    'batchnorm.weight': f([4]),
    'batchnorm.bias': f([4]),
    'batchnorm.running_mean': f([4]),
    'batchnorm.running_var': f([4]),
    'batchnorm.num_batches_tracked': new HostTensor(new BigInt64Array([3n]), [], 'int64'),
    'linear2.weight': f([5, 4]),
    'linear2.bias': f([5]),
  };
}

function shardKeys(file: string): string[] {
  return parseSafetensors(readFileSync(file)).keys();
}

function expectSameTensors(a: Record<string, HostTensor>, b: Record<string, HostTensor>) {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const k of Object.keys(a)) {
    expect(a[k].dtype, k).toBe(b[k].dtype);
    expect(a[k].shape, k).toEqual(b[k].shape);
    expect(hexOf(a[k]), k).toBe(hexOf(b[k]));
  }
}

describe('saveModelFiles layout', () => {
  it('[B45] ModelForTest with maxShardSize=100 -> 3 shards model-0000k-of-00003.safetensors + index; loading reproduces the weights', async () => {
    const sd = modelForTestStateDict();
    const res = await saveModelFiles(sd, dir, { maxShardSize: 100 });
    const shards = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
    expect(res.files).toEqual(shards);
    expect(readdirSync(dir).sort()).toEqual([...shards, SAFE_WEIGHTS_INDEX_NAME].sort());
    // Greedy in order: 48+16+16+16 = 96 | 16+16+8 = 40 (+80 would pass 100) | 80+20 = 100.
    expect(shardKeys(join(dir, shards[0]))).toEqual(['batchnorm.bias', 'batchnorm.weight', 'linear1.bias', 'linear1.weight']);
    expect(shardKeys(join(dir, shards[1]))).toEqual(['batchnorm.num_batches_tracked', 'batchnorm.running_mean', 'batchnorm.running_var']);
    expect(shardKeys(join(dir, shards[2]))).toEqual(['linear2.bias', 'linear2.weight']);
    for (const s of shards) expect(parseSafetensors(readFileSync(join(dir, s))).metadata).toEqual({ format: 'pt' });
    const index = readFileSync(join(dir, SAFE_WEIGHTS_INDEX_NAME), 'utf8');
    expect(index).toBe(
      [
        '{',
        '  "metadata": {',
        '    "total_size": 236',
        '  },',
        '  "weight_map": {',
        '    "batchnorm.bias": "model-00001-of-00003.safetensors",',
        '    "batchnorm.num_batches_tracked": "model-00002-of-00003.safetensors",',
        '    "batchnorm.running_mean": "model-00002-of-00003.safetensors",',
        '    "batchnorm.running_var": "model-00002-of-00003.safetensors",',
        '    "batchnorm.weight": "model-00001-of-00003.safetensors",',
        '    "linear1.bias": "model-00001-of-00003.safetensors",',
        '    "linear1.weight": "model-00001-of-00003.safetensors",',
        '    "linear2.bias": "model-00003-of-00003.safetensors",',
        '    "linear2.weight": "model-00003-of-00003.safetensors"',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    expect(res.totalSize).toBe(236);
    expectSameTensors(await loadModelFiles(dir), sd);
  });

  it('unsharded: a single model.safetensors with {"format": "pt"} and no index', async () => {
    const sd = modelForTestStateDict(1);
    const res = await saveModelFiles(sd, join(dir, 'new', 'sub'));
    expect(res).toMatchObject({ files: [SAFE_WEIGHTS_NAME], totalSize: 236, written: true });
    expect(res.indexFile).toBeUndefined();
    expect(readdirSync(join(dir, 'new', 'sub'))).toEqual([SAFE_WEIGHTS_NAME]);
    const bytes = readFileSync(join(dir, 'new', 'sub', SAFE_WEIGHTS_NAME));
    expect(Buffer.from(serializeSafetensors(sd, { format: 'pt' }))).toEqual(bytes);
    expectSameTensors(await loadModelFiles(join(dir, 'new', 'sub')), sd);
  });

  it('a tensor larger than the limit gets its own shard, placed where it was met while the open shard keeps filling', () => {
    const t = (n: number) => new HostTensor(new Uint8Array(n), [n], 'uint8');
    const split = splitStateDictIntoShards({ a: t(40), B: t(200), c: t(40), d: t(20), e: t(30) }, { maxShardSize: 100 });
    expect([...split.filenameToTensors]).toEqual([
      ['model-00001-of-00003.safetensors', ['B']],
      ['model-00002-of-00003.safetensors', ['a', 'c', 'd']],
      ['model-00003-of-00003.safetensors', ['e']],
    ]);
    expect(split.metadata.total_size).toBe(330);
    expect(split.isSharded).toBe(true);
  });

  it('[B52] maxShardSize strings go through convertFileSizeToInt: "1KiB" is 1024 bytes, "1KB" 1000, "5MBB" is refused', () => {
    const sd = { a: new HostTensor(new Uint8Array(1000), [1000], 'uint8'), b: new HostTensor(new Uint8Array(24), [24], 'uint8') };
    expect(splitStateDictIntoShards(sd, { maxShardSize: '1KiB' }).isSharded).toBe(false);
    expect(splitStateDictIntoShards(sd, { maxShardSize: '1KB' }).filenameToTensors.size).toBe(2);
    expect(splitStateDictIntoShards(sd, { maxShardSize: 1024 }).isSharded).toBe(false);
    expect(() => splitStateDictIntoShards(sd, { maxShardSize: '5MBB' })).toThrow(RangeError);
    expect(splitStateDictIntoShards(sd).isSharded).toBe(false); // default 10GB
  });

  it('deletes shards of an earlier save that this save does not produce, and the other layout\'s file; leaves other files alone', async () => {
    const sd = modelForTestStateDict(2);
    await saveModelFiles(sd, dir, { maxShardSize: 100 });
    const unrelated = ['model-00001-of-00003.bin', 'model-1-of-3.safetensors', 'notes.txt', 'other-00001-of-00002.safetensors'];
    for (const u of unrelated) writeFileSync(join(dir, u), 'x');
    mkdirSync(join(dir, 'model-00009-of-00009.safetensors')); // a folder with a shard's name is not a file: kept

    // 2 shards now: 00003-of-00003 and the old 0000k-of-00003 names go.
    const res2 = await saveModelFiles(sd, dir, { maxShardSize: 140 });
    expect(res2.files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(res2.deletedStaleFiles.sort()).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    expect(readdirSync(dir).sort()).toEqual(
      [...unrelated, 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model-00009-of-00009.safetensors', SAFE_WEIGHTS_INDEX_NAME].sort(),
    );
    expectSameTensors(await loadModelFiles(dir), sd);

    // Unsharded now: shards and the stale index go, so no reader can pick the old weights.
    const res3 = await saveModelFiles(sd, dir);
    expect(res3.deletedStaleFiles.sort()).toEqual([SAFE_WEIGHTS_INDEX_NAME, 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'].sort());
    expect(readdirSync(dir).sort()).toEqual([...unrelated, SAFE_WEIGHTS_NAME, 'model-00009-of-00009.safetensors'].sort());

    // Sharded again: the stale model.safetensors goes (a folder loader would prefer it).
    const res4 = await saveModelFiles(sd, dir, { maxShardSize: 100 });
    expect(res4.deletedStaleFiles).toEqual([SAFE_WEIGHTS_NAME]);
    expect(existsSync(join(dir, SAFE_WEIGHTS_NAME))).toBe(false);
  });

  it('refuses a path that is a file, and pickle output', async () => {
    const file = join(dir, 'f.txt');
    writeFileSync(file, 'x');
    await expect(saveModelFiles(modelForTestStateDict(), file)).rejects.toThrow(`provided path (${file}) should be a directory, not a file`);
    await expect(saveModelFiles(modelForTestStateDict(), dir, { safeSerialization: false })).rejects.toThrow(/pickle.*does not write/);
    expect(readdirSync(dir)).toEqual(['f.txt']);
  });

  it('non-main processes compute the same layout but write and delete nothing', async () => {
    writeFileSync(join(dir, 'model-00001-of-00007.safetensors'), 'old');
    const res = await saveModelFiles(modelForTestStateDict(), dir, { maxShardSize: 100, isMainProcess: false });
    expect(res.written).toBe(false);
    expect(res.files).toHaveLength(3);
    expect(res.indexFile).toBe(SAFE_WEIGHTS_INDEX_NAME);
    expect(res.weightMap['linear2.bias']).toBe('model-00003-of-00003.safetensors');
    expect(readdirSync(dir)).toEqual(['model-00001-of-00007.safetensors']);
  });

  it('tied weights (the same memory under two names) are saved once, like clean_state_dict_for_safetensors', async () => {
    const rng = new SeededRandom(3);
    const emb = randomTensor(rng, 'float32', [6, 2]);
    const view = new HostTensor(emb.data.subarray(0, 6), [3, 2], 'float32'); // a different region of the same buffer: kept
    const res = await saveModelFiles({ 'embed.weight': emb, 'head.weight': emb, 'head.bias': view }, dir);
    expect(res.removedSharedTensors).toEqual(['head.weight']);
    expect(Object.keys(await loadModelFiles(dir)).sort()).toEqual(['embed.weight', 'head.bias']);
  });

  it('an empty state dict writes an empty model.safetensors that loads as {}', async () => {
    const res = await saveModelFiles({}, dir);
    expect(res.files).toEqual([SAFE_WEIGHTS_NAME]);
    expect(await loadModelFiles(dir)).toEqual({});
  });
});

describe('pythonJsonDumps (json.dumps(indent=2, sort_keys=True))', () => {
  it('sorts keys by code point, escapes non-ASCII and controls as Python does', () => {
    expect(pythonJsonDumps({ b: 1, a: { é: 'ü\u{1f600}', '\x7f': '\t"\\' }, c: [], d: {} })).toBe(
      '{\n  "a": {\n    "\\u007f": "\\t\\"\\\\",\n    "\\u00e9": "\\u00fc\\ud83d\\ude00"\n  },\n  "b": 1,\n  "c": [],\n  "d": {}\n}',
    );
    expect(pythonJsonDumps([1, 'x', null, true])).toBe('[\n  1,\n  "x",\n  null,\n  true\n]');
  });
});

describe('loadModelFiles / resolveCheckpointFiles (load_checkpoint_in_model file rules)', () => {
  it('accepts a single file, an index file, a folder with model.safetensors, or a folder with exactly one *.index.json', async () => {
    const sd = modelForTestStateDict(4);
    const sharded = join(dir, 'sharded');
    await saveModelFiles(sd, sharded, { maxShardSize: 100 });
    expectSameTensors(await loadModelFiles(join(sharded, SAFE_WEIGHTS_INDEX_NAME)), sd);
    expectSameTensors(await loadModelFiles(join(sharded, 'model-00002-of-00003.safetensors')), {
      'batchnorm.running_mean': sd['batchnorm.running_mean'],
      'batchnorm.running_var': sd['batchnorm.running_var'],
      'batchnorm.num_batches_tracked': sd['batchnorm.num_batches_tracked'],
    });
    const r = await resolveCheckpointFiles(sharded);
    expect(r.files.map((f) => f.slice(sharded.length + 1))).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
    ]);
    expect(r.indexFile).toBe(join(sharded, SAFE_WEIGHTS_INDEX_NAME));

    // Any *.index.json name works when it is the only one; a bare weight_map (no "weight_map" key) too.
    const custom = join(dir, 'custom');
    mkdirSync(custom);
    await writeSafetensors(join(custom, 'part-b.safetensors'), { y: sd['linear2.bias'] }, { format: 'pt' });
    await writeSafetensors(join(custom, 'part-a.safetensors'), { x: sd['linear1.bias'] });
    writeFileSync(join(custom, 'weights.index.json'), JSON.stringify({ y: 'part-b.safetensors', x: 'part-a.safetensors' }));
    const loaded = await loadModelFiles(custom);
    expectSameTensors(loaded, { x: sd['linear1.bias'], y: sd['linear2.bias'] });
    expect((await resolveCheckpointFiles(custom)).files.map((f) => f.slice(custom.length + 1))).toEqual(['part-a.safetensors', 'part-b.safetensors']);

    // keys: only those are read.
    expect(Object.keys(await loadModelFiles(sharded, { keys: ['linear2.weight'] }))).toEqual(['linear2.weight']);
    await expect(loadModelFiles(sharded, { keys: ['nope'] })).rejects.toThrow(/no tensor\(s\) "nope"/);
  });

  it('gives Accelerate\'s errors for no index, several indexes, and a missing path', async () => {
    await expect(loadModelFiles(dir)).rejects.toThrow(`${dir} is not a folder containing a \`.index.json\` file or a model.safetensors file`);
    writeFileSync(join(dir, 'a.index.json'), '{"weight_map": {}}');
    writeFileSync(join(dir, 'b.index.json'), '{"weight_map": {}}');
    await expect(loadModelFiles(dir)).rejects.toThrow('contains more than one `.index.json` file (a.index.json, b.index.json); delete the irrelevant ones.');
    await expect(loadModelFiles(join(dir, 'missing'))).rejects.toThrow(/missing does not exist \(no such file or folder\)\. Pass the folder saveModel/);
  });

  it('refuses pickle checkpoints, unsafe index entries, incomplete shards, duplicate tensors and non-pt formats', async () => {
    writeFileSync(join(dir, 'pytorch_model.bin'), 'pickle');
    await expect(loadModelFiles(dir)).rejects.toThrow(/pytorch_model\.bin is a PyTorch pickle checkpoint/);

    const d2 = join(dir, 'd2');
    mkdirSync(d2);
    writeFileSync(join(d2, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../escape.safetensors' } }));
    await expect(loadModelFiles(d2)).rejects.toThrow(/must be a file name inside the checkpoint folder/);

    const d3 = join(dir, 'd3');
    mkdirSync(d3);
    await writeSafetensors(join(d3, 's1.safetensors'), { a: HostTensor.fromNumbers([1], [1], 'float32') }, { format: 'pt' });
    await writeSafetensors(
      join(d3, 's2.safetensors'),
      { a: HostTensor.fromNumbers([2], [1], 'float32'), b: HostTensor.fromNumbers([3], [1], 'float32') },
      { format: 'pt' },
    );
    writeFileSync(join(d3, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 's1.safetensors', b: 's1.safetensors' } }));
    await expect(loadModelFiles(d3)).rejects.toMatchObject({ code: 'TENSOR_NOT_FOUND', tensor: 'b' });
    await expect(loadModelFiles(d3)).rejects.toThrow(/s1\.safetensors: the index maps "b" to this file but it holds no such tensor/);
    writeFileSync(join(d3, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 's1.safetensors', b: 's2.safetensors' } }));
    await expect(loadModelFiles(d3)).rejects.toThrow(/tensor "a" is in both .*s1\.safetensors and .*s2\.safetensors/);

    const tf = join(dir, 'tf.safetensors');
    await writeSafetensors(tf, { a: HostTensor.fromNumbers([1], [1], 'float32') }, { format: 'tf' });
    await expect(loadModelFiles(tf)).rejects.toThrow(/saved with format "tf"/);
    expect((await loadModelFiles(tf, { checkFormat: false })).a.toArray()).toEqual([1]);
    const none = join(dir, 'none.safetensors');
    await writeSafetensors(none, { a: HostTensor.fromNumbers([1], [1], 'float32') });
    expect((await loadModelFiles(none)).a.toArray()).toEqual([1]);
  });
});
