// Tied weights (an embedding reused as the LM head, GPT-2 style): saveModel / saveState write the
// tensor once, as Python's save_model does, and strict loading re-ties the dropped name.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accelerator, AcceleratorState, loadModelFiles, parseSafetensors } from '@accelerate/core';
import { readFileSync } from 'node:fs';
import * as torch from '../src/index.js';

const { nn } = torch;
const V = 64;
const D = 32;

class Transformer extends nn.Module {
  wte = new nn.Embedding(V, D);
  forward(ids: torch.Tensor): torch.Tensor {
    return this.wte.forward(ids);
  }
}
class TinyLM extends nn.Module {
  transformer = new Transformer();
  lm_head = new nn.Linear(D, V, { bias: false });
  constructor(tie = true) {
    super();
    if (tie) this.lm_head.weight = this.transformer.wte.weight;
  }
  forward(ids: torch.Tensor): torch.Tensor {
    return this.lm_head.forward(this.transformer.forward(ids));
  }
}

const values = (m: torch.nn.Module) => Object.fromEntries(Object.entries(m.stateDict()).map(([k, v]) => [k, Array.from(v.dataSync() as Float32Array)]));
const keysOf = (file: string) => [...parseSafetensors(readFileSync(file)).keys()].sort();

async function accelerator() {
  await AcceleratorState.resetState();
  return new Accelerator({ backend: torch.libtorch(), configFile: false, env: {} });
}

describe('tied weights', () => {
  it('Module reports the tie and stateDict gives both names one tensor object', () => {
    const m = new TinyLM();
    expect(m.tiedParameters()).toEqual([['transformer.wte.weight', 'lm_head.weight']]);
    const sd = m.stateDict();
    expect(sd['lm_head.weight']).toBe(sd['transformer.wte.weight']);
    expect(new TinyLM(false).tiedParameters()).toEqual([]);
  });

  it('saveModel writes one copy (about half the bytes); loadModelFiles + strict loadStateDict round-trips and keeps the tie', async () => {
    torch.manualSeed(3);
    const acc = await accelerator();
    const root = mkdtempSync(join(tmpdir(), 'tied-'));
    const tied = new TinyLM();
    const r = await acc.saveModel(tied, join(root, 'tied'));
    expect(r.removedSharedTensors).toEqual(['lm_head.weight']);
    await acc.saveModel(new TinyLM(false), join(root, 'untied'));
    const file = join(root, 'tied', 'model.safetensors');
    expect(keysOf(file)).toEqual(['transformer.wte.weight']);
    const tiedSize = statSync(file).size;
    const untiedSize = statSync(join(root, 'untied', 'model.safetensors')).size;
    console.log(`[tied weights] model.safetensors: tied ${tiedSize} B, untied ${untiedSize} B (ratio ${(tiedSize / untiedSize).toFixed(3)})`);
    expect(tiedSize / untiedSize).toBeLessThan(0.55);

    const back = new TinyLM();
    const res = back.loadStateDict(await loadModelFiles(join(root, 'tied')), { strict: true });
    expect(res.missingKeys).toEqual([]);
    expect(values(back)).toEqual(values(tied));
    expect(back.lm_head.weight).toBe(back.transformer.wte.weight);
    // An untied model really misses the name: strict refuses, naming it.
    expect(() => new TinyLM(false).loadStateDict(parseSafetensors(readFileSync(file)).tensors(), { strict: true })).toThrow(/missing keys \[lm_head\.weight\]/);
  });

  it('saveState writes the tied tensor once and loadState (strict model keys) restores it', async () => {
    torch.manualSeed(4);
    const acc = await accelerator();
    const model = new TinyLM();
    const [m] = await acc.prepare(model);
    const dir = join(mkdtempSync(join(tmpdir(), 'tied-state-')), 'ckpt');
    await acc.saveState(dir);
    expect(keysOf(join(dir, 'model.safetensors'))).toEqual(['transformer.wte.weight']);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.sharedTensors).toEqual({ 'model.safetensors': ['lm_head.weight'] });
    const saved = values(acc.unwrapModel(m) as torch.nn.Module);

    torch.manualSeed(99);
    const acc2 = await accelerator();
    const [m2] = await acc2.prepare(new TinyLM());
    await acc2.loadState(dir);
    expect(values(acc2.unwrapModel(m2) as torch.nn.Module)).toEqual(saved);
  });

  it('Python loads the tied file into a tied torch model (safetensors load_model strict, accelerate load_checkpoint_in_model, transformers GPT-2 from_pretrained)', async (ctx) => {
    const venv = join(import.meta.dirname, '../../../.venv-py/bin/python');
    const python = process.env.ACCELERATE_TS_PYTHON || (existsSync(venv) ? venv : undefined);
    if (!python || spawnSync(python, ['-c', 'import torch, safetensors, accelerate'], { encoding: 'utf8' }).status !== 0) {
      console.log(`[tied weights] Python check skipped: ${python ? `${python} cannot import torch, safetensors and accelerate` : 'no ACCELERATE_TS_PYTHON and no .venv-py'}`);
      ctx.skip();
      return;
    }
    torch.manualSeed(5);
    const acc = await accelerator();
    const model = new TinyLM();
    const dir = mkdtempSync(join(tmpdir(), 'tied-py-'));
    await acc.saveModel(model, dir);
    const py = String.raw`
import json, sys, torch
from safetensors.torch import load_model
from accelerate.utils import load_checkpoint_in_model
class T(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.wte = torch.nn.Embedding(${V}, ${D})
class LM(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.transformer = T(); s.lm_head = torch.nn.Linear(${D}, ${V}, bias=False)
        s.lm_head.weight = s.transformer.wte.weight
a = LM(); missing, unexpected = load_model(a, sys.argv[1] + "/model.safetensors", strict=True)
b = LM(); load_checkpoint_in_model(b, sys.argv[1])
out = {"a": a.lm_head.weight.flatten().tolist(), "b": b.lm_head.weight.flatten().tolist(), "tied": a.lm_head.weight is a.transformer.wte.weight}
try:
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel
    transformers.logging.set_verbosity_error()
    GPT2Config(vocab_size=${V}, n_embd=${D}, n_layer=1, n_head=2, n_positions=8).save_pretrained(sys.argv[1])
    # Only transformer.wte.weight is in the file: the other GPT-2 weights start fresh, lm_head is tied to it.
    g = GPT2LMHeadModel.from_pretrained(sys.argv[1])
    out["gpt2"] = g.lm_head.weight.flatten().tolist()
    out["gpt2_tied"] = g.lm_head.weight.data_ptr() == g.transformer.wte.weight.data_ptr()
except ImportError:
    pass
print(json.dumps(out))
`;
    const out = spawnSync(python, ['-c', py, dir], { encoding: 'utf8' });
    expect(out.status, out.stderr).toBe(0);
    const got = JSON.parse(out.stdout.trim().split('\n').pop()!);
    const want = Array.from(model.lm_head.weight.dataSync() as Float32Array);
    expect(got.tied).toBe(true);
    expect(got.a).toEqual(want);
    expect(got.b).toEqual(want);
    if (got.gpt2 === undefined) console.log('[tied weights] transformers check skipped: transformers is not installed');
    else {
      expect(got.gpt2_tied).toBe(true);
      expect(got.gpt2).toEqual(want);
    }
  }, 120_000);
});
