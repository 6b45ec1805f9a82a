/**
 * A saveState checkpoint read by Python: `hashlib` checks every size and sha256
 * of the manifest, `safetensors.torch` opens every .safetensors file, and the
 * tensors the JSON files reference exist with the saved values. Skipped with a
 * printed reason when no Python with torch and safetensors is available
 * (`ACCELERATE_TS_PYTHON`, else the repo's `.venv-py`).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { AdamW, LinearModel, ReferenceBackend, mseLoss, randn } from '../../src/testing/index.js';

const VENV_PYTHON = join(resolve(import.meta.dirname, '../../../..'), '.venv-py', 'bin', 'python');
const python = process.env.ACCELERATE_TS_PYTHON || (existsSync(VENV_PYTHON) ? VENV_PYTHON : undefined);
const usable = python !== undefined && spawnSync(python, ['-c', 'import torch, safetensors'], { encoding: 'utf8' }).status === 0;
if (!usable) console.log(`[save-state python] skipped: ${python ? `${python} cannot import torch and safetensors` : 'no ACCELERATE_TS_PYTHON and no .venv-py'}`);

const SCRIPT = String.raw`
import hashlib, json, os, sys
from safetensors.torch import load_file
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
assert m["format"] == "accelerate-ts-checkpoint" and m["formatVersion"] == 1, m
out = {"files": {}, "refs": {}}
for name, e in m["files"].items():
    b = open(os.path.join(d, name), "rb").read()
    out["files"][name] = [len(b) == e["size"], hashlib.sha256(b).hexdigest() == e["sha256"]]
    if name.endswith(".safetensors"):
        t = load_file(os.path.join(d, name))
        out[name] = {k: v.flatten().tolist() for k, v in t.items()}
def refs(v, acc):
    if isinstance(v, dict):
        if len(v) == 1 and ("__tensor__" in v or "__bytes__" in v):
            acc.append(next(iter(v.values())))
        else:
            for x in v.values(): refs(x, acc)
    elif isinstance(v, list):
        for x in v: refs(x, acc)
    return acc
for name in m["files"]:
    if name.endswith(".json"):
        doc = json.load(open(os.path.join(d, name)))
        st = name[:-5] + ".safetensors"
        keys = set(load_file(os.path.join(d, st)).keys()) if st in m["files"] else set()
        r = refs(doc["value"], [])
        out["refs"][name] = [doc["kind"], len(r), all(k in keys for k in r)]
print(json.dumps(out))
`;

beforeEach(async () => {
  await AcceleratorState.resetState();
});

describe.skipIf(!usable)('a saveState checkpoint read by Python', () => {
  it('hashlib agrees with every manifest entry; safetensors.torch reads the weights and the optimizer moments the JSON references', async () => {
    const acc = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {} });
    const model = new LinearModel(3, 2);
    const opt = new AdamW(model.parameters(), { lr: 0.1 });
    const [m, o] = await acc.prepare(model, opt);
    for (let i = 0; i < 2; i++) {
      acc.backward(mseLoss(m.forward(randn([4, 3])), randn([4, 2])));
      o.step();
      o.zeroGrad();
    }
    const dir = join(mkdtempSync(join(tmpdir(), 'acc-state-py-')), 'c');
    await acc.saveState(dir);
    const run = spawnSync(python!, ['-c', SCRIPT, dir], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    const out = JSON.parse(run.stdout);
    for (const [name, ok] of Object.entries(out.files)) expect([name, ok]).toEqual([name, [true, true]]);
    expect(out['model.safetensors'].weight).toEqual([...model.weight.toHost().data]);
    expect(out['model.safetensors'].bias).toEqual([...model.bias!.toHost().data]);
    const st = opt.stateDict();
    // The optimizer's moments, keyed by their path in the state dict, with the same values.
    const expected: Record<string, number[]> = {};
    for (const [id, entry] of Object.entries(st.state)) {
      for (const [k, v] of Object.entries(entry)) if (typeof v === 'object') expected[`state.${id}.${k}`] = [...v.data].map(Number);
    }
    expect(Object.keys(expected).length).toBeGreaterThan(0);
    expect(out['optimizer.safetensors']).toEqual(expected);
    // Every tensor reference in the JSON files resolves in its .safetensors companion.
    expect(out.refs['optimizer.json']).toEqual(['optimizer', Object.values(st.state).flatMap((e) => Object.values(e).filter((v) => typeof v === 'object')).length, true]);
    expect(out.refs['random_states_0.json']).toEqual(['random_states', 1, true]);
  });
});
