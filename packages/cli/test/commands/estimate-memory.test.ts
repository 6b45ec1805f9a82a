import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostTensor, loadModelFiles, saveModelFiles, writeSafetensors } from '@accelerate/core';
import { convertBytes, estimateMemory, formatEstimate, loadModelShape, modelFilesOfFolder, runEstimateMemory, shapesFromConfig } from '../../src/commands/estimate-memory.js';
import { runCli } from '../../src/program.js';
import type { CliContext } from '../../src/context.js';

const dir = mkdtempSync(join(tmpdir(), 'acc-estimate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ctxWith(out: string[], err: string[] = []): CliContext {
  return { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: {}, stdinIsTTY: false, exitCode: 0 };
}

const GPT2 = { model_type: 'gpt2', vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12 };
const BERT_BASE = { model_type: 'bert', vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, intermediate_size: 3072, max_position_embeddings: 512, type_vocab_size: 2 };
const TINYLLAMA = {
  model_type: 'llama', vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, tie_word_embeddings: false,
};
const LLAMA2_7B = { model_type: 'llama', vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32 };
const QWEN2_05B = {
  model_type: 'qwen2', vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, tie_word_embeddings: true,
};

describe('estimate-memory from config.json', () => {
  it('parameter counts match the published sizes of gpt2, bert-base, TinyLlama-1.1B, Llama-2-7B and Qwen2-0.5B', () => {
    const count = (c: object) => estimateMemory(shapesFromConfig(c as never)).parameters;
    expect(count(GPT2)).toBe(124_439_808);
    expect(count(BERT_BASE)).toBe(109_482_240);
    expect(count(TINYLLAMA)).toBe(1_100_048_384);
    expect(count(LLAMA2_7B)).toBe(6_738_415_616);
    expect(count(QWEN2_05B)).toBe(494_032_768);
  });

  it('sizes per dtype divide the float32 size; Adam is 4x (fp32) and 2x (fp16) the float32 size; the largest layer is the embedding or a block', () => {
    const e = estimateMemory(shapesFromConfig(GPT2 as never), ['float32', 'float16', 'int8', 'int4']);
    const fp32 = 124_439_808 * 4;
    expect(e.rows.map((r) => [r.dtype, r.totalSize, r.training])).toEqual([
      ['float32', fp32, 4 * fp32],
      ['float16', fp32 / 2, 2 * fp32],
      ['int8', fp32 / 4, null],
      ['int4', fp32 / 8, null],
    ]);
    expect(e.largestLayerName).toBe('transformer.wte');
    expect(e.largestLayerParameters).toBe(50257 * 768);
    const llama = estimateMemory(shapesFromConfig(LLAMA2_7B as never));
    expect(llama.largestLayerName).toBe('model.layers.0');
    expect(llama.largestLayerParameters).toBe(4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096);
  });

  it('convertBytes prints like Accelerate (1024-based, Python float formatting)', () => {
    expect(convertBytes(236)).toBe('236 bytes');
    expect(convertBytes(118, false)).toBe('118.0 bytes');
    expect(convertBytes(1536)).toBe('1.5 KB');
    expect(convertBytes(2 * 2 ** 30)).toBe('2.0 GB');
    expect(convertBytes(497_759_232)).toBe('474.7 MB');
    // Python's round() sends exact binary ties to even: 208.625 -> 208.62, 11.125 -> 11.12.
    expect(convertBytes(208.625 * 1024)).toBe('208.62 KB');
    expect(convertBytes(11.125 * 1024)).toBe('11.12 KB');
  });

  it('unknown model types and bad dtypes are refused with the supported list', async () => {
    const cfg = join(dir, 'weird.json');
    writeFileSync(cfg, JSON.stringify({ model_type: 'mamba' }));
    await expect(loadModelShape(cfg)).rejects.toThrow(/model_type "mamba"; estimate-memory derives shapes for llama, mistral, qwen2, gpt2, bert/);
    const out: string[] = [];
    const err: string[] = [];
    const gpt2 = join(dir, 'gpt2.json');
    writeFileSync(gpt2, JSON.stringify(GPT2));
    expect(await runCli(['estimate-memory', gpt2, '--dtypes', 'float32', 'fp7'], ctxWith(out, err))).toBe(1);
    expect(err.join('')).toContain('--dtypes: fp7 not supported; choose from float32, float16, bfloat16, int8, int4.');
  });

  it('through the CLI: accelerate estimate-memory config.json --dtypes float32 int4 prints the table', async () => {
    const gpt2 = join(dir, 'config.json');
    writeFileSync(gpt2, JSON.stringify(GPT2));
    const out: string[] = [];
    expect(await runCli(['estimate-memory', gpt2, '--dtypes', 'float32', 'int4'], ctxWith(out))).toBe(0);
    const text = out.join('');
    expect(text).toContain('124,439,808 parameters');
    expect(text).toContain(`Memory Usage for loading \`${gpt2}\``);
    // wte: 50257 x 768 x 4 bytes = 147.24 MiB; total 474.7 MiB; Adam 4 x = 1.85 GiB.
    expect(text).toMatch(/│float32│\s+147\.24 MB\s+│ 474\.7 MB │\s+1\.85 GB\s+│/);
    expect(text).toMatch(/│ {2}int4 │\s+18\.4 MB\s+│ 59\.34 MB │\s+N\/A\s+│/);
    expect(convertBytes(497_759_232 / 8, false)).toBe('59.34 MB');
  });
});

const venv = fileURLToPath(new URL('../../../../.venv-py/bin/python', import.meta.url));
const python = process.env.ACCELERATE_TS_PYTHON ?? (existsSync(venv) ? venv : undefined);
const probe = python ? spawnSync(python, ['-c', 'import accelerate, torch'], { encoding: 'utf8', timeout: 120_000 }) : undefined;
const skipReason = !python ? 'no Python (set ACCELERATE_TS_PYTHON or run scripts/setup-python.sh)' : probe!.status !== 0 ? `${python} lacks accelerate/torch` : undefined;
if (skipReason) console.log(`[estimate-memory] Python comparison skipped: ${skipReason}`);

describe('estimate-memory from safetensors headers', () => {
  async function makeSharded(): Promise<string> {
    const d = join(dir, 'sharded');
    const sd: Record<string, HostTensor> = {};
    const add = (name: string, shape: number[]) => (sd[name] = new HostTensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, 'float32'));
    add('model.embed.weight', [300, 32]);
    for (let i = 0; i < 3; i++) {
      add(`model.layers.${i}.attn.qkv.weight`, [96, 32]);
      add(`model.layers.${i}.attn.qkv.bias`, [96]);
      add(`model.layers.${i}.mlp.fc1.weight`, [128, 32]);
      add(`model.layers.${i}.mlp.fc2.weight`, [32, 128]);
      add(`model.layers.${i}.norm.weight`, [32]);
    }
    add('model.norm.weight', [32]);
    add('lm_head.weight', [300, 32]);
    const r = await saveModelFiles(sd, d, { maxShardSize: 40_000 });
    expect(r.files.length).toBeGreaterThan(1);
    return d;
  }

  it('a sharded folder: counts from headers only; the single-file path gives the same numbers', async () => {
    const d = await makeSharded();
    const e = estimateMemory(await loadModelShape(d));
    expect(e.parameters).toBe(2 * 300 * 32 + 3 * (96 * 32 + 96 + 2 * 128 * 32 + 32) + 32);
    expect(e.largestLayerName).toBe('model.layers.0');
    const single = join(dir, 'single');
    await saveModelFiles(await loadModelFiles(d), single);
    expect(estimateMemory(await loadModelShape(join(single, 'model.safetensors'))).parameters).toBe(e.parameters);
  });

  it.skipIf(skipReason !== undefined)("the table equals Accelerate's (calculate_maximum_sizes + estimate_training_usage + create_ascii_table) on the same module tree", async () => {
    const d = await makeSharded();
    const shape = await loadModelShape(d);
    const out: string[] = [];
    await runEstimateMemory(ctxWith(out), d);
    const ours = out.find((t) => t.startsWith('┌'))!.trimEnd();
    const script = `
import json, sys, torch, torch.nn as nn
from accelerate.utils import calculate_maximum_sizes
from accelerate.commands.estimate import estimate_training_usage, create_ascii_table
from accelerate.utils.other import convert_bytes
spec = json.load(sys.stdin)
class Block(nn.Module): pass
class Node(nn.Module): pass
root = Node()
for t in spec['tensors']:
    parts = t['name'].split('.')
    m = root
    for i, p in enumerate(parts[:-1]):
        if not hasattr(m, p):
            path = '.'.join(parts[:i + 1])
            m.add_module(p, Block() if path in spec['blocks'] else Node())
        m = getattr(m, p)
    m.register_parameter(parts[-1], nn.Parameter(torch.empty(t['shape'], device='meta')))
root._no_split_modules = ['Block']
total, largest = calculate_maximum_sizes(root)
rows = []
for dtype in ['float32', 'float16', 'int8', 'int4']:
    t, l = total, largest[0]
    train = estimate_training_usage(t, dtype)
    f = {'float32': 1, 'float16': 2, 'int8': 4, 'int4': 8}[dtype]
    if f != 1:
        t /= f; l /= f
    m = max(train.values())
    rows.append([dtype, convert_bytes(l), convert_bytes(t), convert_bytes(m) if m != -1 else 'N/A'])
print(create_ascii_table(['dtype', 'Largest Layer', 'Total Size', 'Training using Adam'], rows, f"Memory Usage for loading \`{spec['name']}\`"))
`;
    const r = spawnSync(python!, ['-c', script], { input: JSON.stringify({ tensors: shape.tensors, blocks: shape.blocks, name: d }), encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(ours).toBe(r.stdout.trimEnd());
    expect(formatEstimate(estimateMemory(shape), d)).toBe(ours);
  });
});

describe('estimate-memory on an index file, other JSON, and saveState folders', () => {
  const f32 = (...shape: number[]) => new HostTensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, 'float32');
  // 3 blocks of (96x32 + 96 + 2 x 128x32 + 32) + embed 300x32 + head 300x32 + norm 32.
  const MODEL_PARAMS = 2 * 300 * 32 + 3 * (96 * 32 + 96 + 2 * 128 * 32 + 32) + 32;
  function modelState(): Record<string, HostTensor> {
    const sd: Record<string, HostTensor> = { 'model.embed.weight': f32(300, 32) };
    for (let i = 0; i < 3; i++) {
      sd[`model.layers.${i}.attn.qkv.weight`] = f32(96, 32);
      sd[`model.layers.${i}.attn.qkv.bias`] = f32(96);
      sd[`model.layers.${i}.mlp.fc1.weight`] = f32(128, 32);
      sd[`model.layers.${i}.mlp.fc2.weight`] = f32(32, 128);
      sd[`model.layers.${i}.norm.weight`] = f32(32);
    }
    sd['model.norm.weight'] = f32(32);
    sd['lm_head.weight'] = f32(300, 32);
    return sd;
  }
  /** What Accelerator.saveState writes next to the model: optimizer moments and RNG states. */
  async function addTrainingState(folder: string): Promise<void> {
    const sd = modelState();
    const opt: Record<string, HostTensor> = {};
    Object.entries(sd).forEach(([, t], i) => {
      opt[`state.${i}.exp_avg`] = f32(...t.shape);
      opt[`state.${i}.exp_avg_sq`] = f32(...t.shape);
    });
    await writeSafetensors(join(folder, 'optimizer.safetensors'), opt);
    await writeSafetensors(join(folder, 'random_states_0.safetensors'), { torch_cpu: new HostTensor(new Uint8Array(5056), [5056], 'uint8') });
    writeFileSync(join(folder, 'manifest.json'), JSON.stringify({ format: 'accelerate-ts-checkpoint', formatVersion: 1, files: {} }));
  }

  it('a *.safetensors.index.json: reads the shards it lists (headers only) and says which', async () => {
    const d = join(dir, 'indexed');
    const r = await saveModelFiles(modelState(), d, { maxShardSize: 40_000 });
    const shards = readdirSync(d).filter((f) => f.endsWith('.safetensors')).sort();
    expect(shards.length).toBeGreaterThan(1);
    expect(r.files.length).toBe(shards.length);
    const index = join(d, 'model.safetensors.index.json');
    const shape = await loadModelShape(index);
    expect(shape.files).toEqual(shards.map((f) => join(d, f)));
    const e = estimateMemory(shape);
    expect(e.parameters).toBe(MODEL_PARAMS);
    expect(e.largestLayerName).toBe('model.layers.0');
    const out: string[] = [];
    expect(await runCli(['estimate-memory', index], ctxWith(out))).toBe(0);
    const text = out.join('');
    expect(text).toContain(`model.safetensors.index.json: ${MODEL_PARAMS.toLocaleString('en-US')} parameters in 18 tensors`);
    expect(text).toContain(`Read ${shards.join(', ')}.\n`);
  });

  it('an index naming a missing or non-safetensors shard, and JSON that is neither a config nor an index, are refused clearly', async () => {
    const d = join(dir, 'bad-index');
    mkdirSync(d, { recursive: true });
    const missing = join(d, 'model.safetensors.index.json');
    writeFileSync(missing, JSON.stringify({ metadata: {}, weight_map: { 'a.weight': 'model-00001-of-00002.safetensors' } }));
    await expect(loadModelShape(missing)).rejects.toThrow(`${missing} lists the shard model-00001-of-00002.safetensors, which is not in ${d}.`);
    const bin = join(d, 'pytorch_model.bin.index.json');
    writeFileSync(bin, JSON.stringify({ weight_map: { 'a.weight': 'pytorch_model-00001-of-00001.bin' } }));
    await expect(loadModelShape(bin)).rejects.toThrow(
      `${bin}: shard "pytorch_model-00001-of-00001.bin" is not a .safetensors file; estimate-memory reads safetensors headers only.`,
    );
    const manifest = join(d, 'manifest.json');
    writeFileSync(manifest, JSON.stringify({ format: 'accelerate-ts-checkpoint', formatVersion: 1 }));
    const err: string[] = [];
    expect(await runCli(['estimate-memory', manifest], ctxWith([], err))).toBe(1);
    expect(err.join('')).toContain(
      `${manifest} is neither an HF config.json (it has no "model_type") nor a safetensors index (it has no "weight_map"). ` +
        'Pass a config.json, a *.safetensors.index.json, a .safetensors file, or a folder holding them.',
    );
  });

  it('a saveState folder counts model.safetensors only, not the optimizer and RNG tensors, and says so', async () => {
    const d = join(dir, 'checkpoint_0');
    await saveModelFiles(modelState(), d);
    await addTrainingState(d);
    expect(modelFilesOfFolder(d)).toEqual({
      files: [join(d, 'model.safetensors')],
      skipped: [join(d, 'optimizer.safetensors'), join(d, 'random_states_0.safetensors')],
    });
    const out: string[] = [];
    const e = await runEstimateMemory(ctxWith(out), d);
    expect(e.parameters).toBe(MODEL_PARAMS);
    expect(out.join('')).toContain('Read model.safetensors; not counted (not model weights): optimizer.safetensors, random_states_0.safetensors.\n');
    // Counting every file would have tripled the weights (two Adam moments) and added the RNG bytes.
    const everything = estimateMemory(await loadModelShape(join(d, 'optimizer.safetensors'))).parameters;
    expect(everything).toBe(2 * MODEL_PARAMS);
  });

  it('a sharded saveState folder counts the shards of its index; a folder without model files still counts every file', async () => {
    const d = join(dir, 'checkpoint_sharded');
    await saveModelFiles(modelState(), d, { maxShardSize: 40_000 });
    await addTrainingState(d);
    const shards = readdirSync(d).filter((f) => /^model-.*\.safetensors$/.test(f)).sort();
    expect(shards.length).toBeGreaterThan(1);
    const shape = await loadModelShape(d);
    expect(shape.files).toEqual(shards.map((f) => join(d, f)));
    expect(shape.skipped).toEqual([join(d, 'optimizer.safetensors'), join(d, 'random_states_0.safetensors')]);
    expect(estimateMemory(shape).parameters).toBe(MODEL_PARAMS);

    const adapters = join(dir, 'adapters');
    mkdirSync(adapters, { recursive: true });
    await writeSafetensors(join(adapters, 'adapter_a.safetensors'), { 'a.lora_A': f32(4, 32) });
    await writeSafetensors(join(adapters, 'adapter_b.safetensors'), { 'b.lora_B': f32(32, 4) });
    const both = await loadModelShape(adapters);
    expect(both.skipped).toEqual([]);
    expect(estimateMemory(both).parameters).toBe(256);
  });
});
