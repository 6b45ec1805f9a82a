// Cross-checks against Python Accelerate (the venv of scripts/setup-python.sh):
// device maps for the same module trees, and offload folders read both ways.
import { describe, it, expect, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostTensor } from '@accelerate/core';
import { computeModuleSizes, getBalancedMemory, inferAutoDeviceMap, OffloadedWeightsLoader, offloadStateDict } from '../../src/index.js';
import { FourLinears, ThreeLayers, TinyLM, nn, torch, withGpus } from './models.js';

const backend = new torch.LibtorchBackend();
/** Python keeps budgets of absent GPUs (with a warning); plan as on a 3-GPU machine to compare. */
const gpus = withGpus(backend, 3);
const venv = fileURLToPath(new URL('../../../../.venv-py/bin/python', import.meta.url));
const python = process.env.ACCELERATE_TS_PYTHON ?? (fs.existsSync(venv) ? venv : undefined);
const probe = python ? spawnSync(python, ['-c', 'import accelerate, torch, numpy'], { encoding: 'utf8', timeout: 120_000 }) : undefined;
const skipReason = !python
  ? 'no Python: set ACCELERATE_TS_PYTHON or run scripts/setup-python.sh'
  : probe!.status !== 0
    ? `the Python at ${python} lacks accelerate/torch/numpy: ${(probe!.stderr || '').trim().split('\n').pop()}`
    : undefined;
if (skipReason) console.log(`[big-modeling] Python cross-checks skipped: ${skipReason}`);

function py(code: string, input: unknown): any {
  const r = spawnSync(python!, ['-c', code], { input: JSON.stringify(input), encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'bigmodel-py-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const PY_MODELS = `
import json, sys, torch, torch.nn as nn
from collections import OrderedDict
from accelerate.utils import infer_auto_device_map, compute_module_sizes, get_balanced_memory
class ModelForTest(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(3, 4); self.batchnorm = nn.BatchNorm1d(4); self.linear2 = nn.Linear(4, 5)
class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.ln1 = nn.LayerNorm(d); self.attn = nn.MultiheadAttention(d, h, batch_first=True); self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d); self.fc2 = nn.Linear(4 * d, d)
class TinyLM(nn.Module):
    def __init__(self, vocab, d, n, h=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d); self.layers = nn.ModuleList([Block(d, h) for _ in range(n)])
        self.norm = nn.LayerNorm(d); self.head = nn.Linear(d, vocab, bias=False); self.head.weight = self.embed.weight
def build(spec):
    if spec['kind'] == 'three':
        m = nn.Sequential(OrderedDict([('layer1', ModelForTest()), ('layer2', ModelForTest()), ('layer3', ModelForTest())]))
        for a, b in spec.get('ties', []):
            pa, na = a.rsplit('.', 1); pb, nb = b.rsplit('.', 1)
            setattr(m.get_submodule(pa), na, getattr(m.get_submodule(pb), nb))
        return m
    if spec['kind'] == 'four':
        m = nn.Sequential(OrderedDict([('linear1', nn.Linear(4, 4)), ('linear2', nn.Linear(6, 6)), ('linear3', nn.Linear(4, 4)), ('linear4', nn.Linear(6, 6))]))
        return m
    if spec['kind'] == 'lm':
        return TinyLM(spec['vocab'], spec['d'], spec['n'])
def mm(d):
    return {(int(k) if k.isdigit() else k): v for k, v in d.items()}
out = []
for case in json.load(sys.stdin):
    m = build(case['model'])
    if case['op'] == 'infer':
        r = infer_auto_device_map(m, max_memory=mm(case['maxMemory']), no_split_module_classes=case.get('noSplit'), dtype=case.get('dtype'), fallback_allocation=case.get('fallback', False))
        out.append({k: v for k, v in r.items()})
    elif case['op'] == 'sizes':
        out.append(dict(compute_module_sizes(m, dtype=case.get('dtype'))))
    elif case['op'] == 'balanced':
        out.append({str(k): v for k, v in get_balanced_memory(m, max_memory=mm(case['maxMemory']), no_split_module_classes=case.get('noSplit'), low_zero=case.get('lowZero', False)).items()})
print(json.dumps(out))
`;

function buildTs(spec: { kind: string; ties?: Array<[string, string]>; vocab?: number; d?: number; n?: number }): torch.nn.Module {
  if (spec.kind === 'three') {
    const m = new ThreeLayers();
    for (const [a, b] of spec.ties ?? []) {
      const get = (path: string) => path.split('.').reduce((o: any, k) => o[k], m);
      const [pa, na] = [a.slice(0, a.lastIndexOf('.')), a.slice(a.lastIndexOf('.') + 1)];
      const [pb, nb] = [b.slice(0, b.lastIndexOf('.')), b.slice(b.lastIndexOf('.') + 1)];
      get(pa)[na] = get(pb)[nb];
    }
    return m;
  }
  if (spec.kind === 'four') return new FourLinears(4, 6);
  return new TinyLM(spec.vocab!, spec.d!, spec.n!);
}

describe.skipIf(skipReason !== undefined)('against Python Accelerate', () => {
  it('inferAutoDeviceMap, computeModuleSizes and getBalancedMemory give Python\'s results on the same module trees', () => {
    const three = { kind: 'three' };
    const tied = { kind: 'three', ties: [['layer3.linear2.weight', 'layer1.linear2.weight'], ['layer2.linear1.weight', 'layer1.linear1.weight']] };
    const lm = { kind: 'lm', vocab: 64, d: 16, n: 4 };
    const cases: any[] = [];
    for (const model of [three, tied, lm]) {
      for (const maxMemory of [{ 0: 300, 1: 300, cpu: 400 }, { cpu: 500 }, { 0: 250, cpu: 1000 }, { 0: 20000, 1: 20000 }, { 0: 9000, cpu: 12000 }]) {
        for (const noSplit of [undefined, ['ModelForTest', 'Block']]) cases.push({ op: 'infer', model, maxMemory, noSplit });
      }
      cases.push({ op: 'infer', model, maxMemory: { cpu: 6000 }, dtype: 'float16' });
      cases.push({ op: 'sizes', model });
      cases.push({ op: 'sizes', model, dtype: 'float16' });
      cases.push({ op: 'balanced', model, maxMemory: { 0: 30000, 1: 30000, 2: 30000 }, noSplit: ['ModelForTest', 'Block'] });
      cases.push({ op: 'balanced', model, maxMemory: { 0: 30000, 1: 30000, 2: 30000 }, lowZero: true });
    }
    cases.push({ op: 'infer', model: { kind: 'four' }, maxMemory: { 0: 250, 1: 400 } });
    // Fallback allocation: a device too small for the next block still gets a module that fits.
    for (const maxMemory of [{ 0: 15000, cpu: 60000 }, { 0: 15000, 1: 16000, cpu: 60000 }, { 0: 14000, 1: 30000, cpu: 40000 }]) {
      for (const fallback of [false, true]) cases.push({ op: 'infer', model: lm, maxMemory, noSplit: ['Block'], fallback });
    }
    const expected = py(PY_MODELS, cases);
    const got = cases.map((c) => {
      const m = buildTs(c.model);
      if (c.op === 'infer') return inferAutoDeviceMap(gpus, m, { maxMemory: c.maxMemory, noSplitModuleClasses: c.noSplit, dtype: c.dtype, fallbackAllocation: c.fallback });
      if (c.op === 'sizes') return computeModuleSizes(backend, m, { dtype: c.dtype });
      return getBalancedMemory(gpus, m, c.maxMemory, { noSplitModuleClasses: c.noSplit, lowZero: c.lowZero });
    });
    expect(got.length).toBe(expected.length);
    // The fallback cases do change the map (a small module fills the device the next block does not fit).
    const fb = cases.map((c, i) => (c.fallback ? i : -1)).filter((i) => i >= 0);
    expect(fb.some((i) => JSON.stringify(expected[i]) !== JSON.stringify(expected[i - 1]))).toBe(true);
    for (let i = 0; i < got.length; i++) expect({ case: cases[i], result: got[i] }).toEqual({ case: cases[i], result: expected[i] });
  });

  it('offload folders: Python reads what we write, we read what Python writes (bf16, int64, 0-d, bool)', () => {
    const ours = join(tmp, 'ours');
    const bf = new HostTensor(new Uint16Array([0x3f80, 0xc000, 0x4049]), [3], 'bfloat16');
    offloadStateDict(backend, ours, {
      'a.weight': backend.fromHost(new HostTensor(new Float32Array([1.5, -2, 3.25, 4, 5, 6]), [2, 3], 'float32')),
      'a.steps': backend.fromHost(new HostTensor(new BigInt64Array([7n]), [], 'int64')),
      'b.half': backend.fromHost(bf),
      'b.mask': backend.fromHost(new HostTensor(new Uint8Array([1, 0, 1]), [3], 'bool')),
    });
    const read = py(
      `import json, sys, os, torch
from accelerate.utils.offload import load_offloaded_weight
d = json.load(sys.stdin)
idx = json.load(open(os.path.join(d, 'index.json')))
out = {k: {'shape': list(t.shape), 'dtype': str(t.dtype), 'v': t.float().flatten().tolist() if t.dim() else [t.item()]} for k, t in ((k, load_offloaded_weight(os.path.join(d, k + '.dat'), v)) for k, v in idx.items())}
print(json.dumps(out))`,
      ours,
    );
    expect(read).toEqual({
      'a.weight': { shape: [2, 3], dtype: 'torch.float32', v: [1.5, -2, 3.25, 4, 5, 6] },
      'a.steps': { shape: [], dtype: 'torch.int64', v: [7] },
      'b.half': { shape: [3], dtype: 'torch.bfloat16', v: [1, -2, 3.140625] },
      'b.mask': { shape: [3], dtype: 'torch.bool', v: [1, 0, 1] },
    });

    const theirs = join(tmp, 'theirs');
    py(
      `import json, sys, torch
from accelerate.utils import offload_state_dict
offload_state_dict(json.load(sys.stdin), {'w': torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4, 'h': torch.tensor([1.0, -0.5], dtype=torch.bfloat16), 'n': torch.tensor(3), 'f': torch.tensor([0.25], dtype=torch.float16)})
print('null')`,
      theirs,
    );
    const loader = new OffloadedWeightsLoader(backend, { saveFolder: theirs });
    const val = (k: string) => (loader.get(k) as torch.Tensor).float().tolist();
    expect(loader.keys().sort()).toEqual(['f', 'h', 'n', 'w']);
    expect(val('w')).toEqual([[0, 0.25, 0.5], [0.75, 1, 1.25]]);
    expect(val('h')).toEqual([1, -0.5]);
    expect((loader.get('h') as torch.Tensor).dtype).toBe('bfloat16');
    expect((loader.get('n') as torch.Tensor).shape).toEqual([]);
    expect(val('n')).toBe(3);
    expect(val('f')).toEqual([0.25]);
  });
});
