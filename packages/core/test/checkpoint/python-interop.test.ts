/**
 * Interop with Python's safetensors and Accelerate: Python reads what we
 * write, we read what Python writes, and `saveModelFiles` lays a sharded
 * model out exactly as `Accelerator.save_model` does.
 *
 * Python: `ACCELERATE_TS_PYTHON`, else the repo's `.venv-py/bin/python`
 * (made by scripts/setup-python.sh) when it exists; it must import torch,
 * safetensors and accelerate. Otherwise the tests are skipped and the reason
 * printed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HostTensor, type DType } from '../../src/tensor/host-tensor.js';
import { SeededRandom } from '../../src/testing/prng.js';
import { bfloat16BitsToNumber, float16BitsToNumber } from '../../src/ops/float16.js';
import {
  SafetensorsFile,
  parseSafetensors,
  serializeSafetensors,
  writeSafetensors,
  type RawTensor,
  type SafetensorsDType,
} from '../../src/checkpoint/safetensors.js';
import { SAFE_WEIGHTS_INDEX_NAME, loadModelFiles, saveModelFiles } from '../../src/checkpoint/save-model.js';
import { ALL_HOST_DTYPES, hexOf, randomTensor, tempDir } from './helpers.js';

const REPO = resolve(import.meta.dirname, '../../../..');
const VENV_PYTHON = join(REPO, '.venv-py', 'bin', 'python');

function findPython(): { python?: string; reason?: string } {
  const python = process.env.ACCELERATE_TS_PYTHON || (existsSync(VENV_PYTHON) ? VENV_PYTHON : undefined);
  if (!python) return { reason: `no ACCELERATE_TS_PYTHON and no ${VENV_PYTHON} (run scripts/setup-python.sh)` };
  const probe = spawnSync(python, ['-c', 'import torch, safetensors, accelerate; print(torch.__version__, safetensors.__version__, accelerate.__version__)'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (probe.status !== 0) {
    return { reason: `${python} cannot import torch, safetensors and accelerate: ${(probe.error?.message ?? probe.stderr ?? '').trim().split('\n').pop()}` };
  }
  console.log(`[checkpoint python-interop] using ${python} (torch, safetensors, accelerate = ${probe.stdout.trim()})`);
  return { python };
}

const { python, reason } = findPython();
if (!python) console.log(`[checkpoint python-interop] skipped: ${reason}`);

const tmp = tempDir('st-py-');
afterAll(() => tmp.cleanup());

function runPython(script: string, args: string[]): unknown {
  const r = spawnSync(python!, ['-c', script, ...args], { encoding: 'utf8', timeout: 180_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python failed (${r.status ?? r.signal}): ${r.stderr || r.error?.message}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

// Dumps every tensor of a dict as dtype, shape, raw bytes and printed values.
const DUMP_PY = String.raw`
import json, math, torch
def fmt(x):
    if isinstance(x, bool): return str(int(x))
    if isinstance(x, int): return str(x)
    if math.isnan(x): return "nan"
    if math.isinf(x): return "inf" if x > 0 else "-inf"
    return repr(float(x))
def dump(tensors):
    out = {}
    for k, v in tensors.items():
        flat = v.reshape(-1).contiguous()
        vals = None
        if not str(v.dtype).startswith("torch.float8") and v.dtype not in (torch.uint16, torch.uint32, torch.uint64):
            vals = [fmt(x) for x in flat.tolist()]
        out[k] = {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                  "hex": flat.view(torch.uint8).numpy().tobytes().hex(), "values": vals}
    return out
`;

type Dump = Record<string, { dtype: string; shape: number[]; hex: string; values: string[] | null }>;

const TORCH_NAME: Record<SafetensorsDType, string> = {
  BOOL: 'bool', U8: 'uint8', I8: 'int8', I16: 'int16', I32: 'int32', I64: 'int64', F16: 'float16', BF16: 'bfloat16', F32: 'float32', F64: 'float64',
  U16: 'uint16', U32: 'uint32', U64: 'uint64', F8_E4M3: 'float8_e4m3fn', F8_E5M2: 'float8_e5m2',
  F4: '?', F6_E2M3: '?', F6_E3M2: '?', F8_E8M0: 'float8_e8m0fnu', F8_E4M3FNUZ: 'float8_e4m3fnuz', F8_E5M2FNUZ: 'float8_e5m2fnuz', C64: 'complex64',
};
const HOST_TO_TORCH: Record<DType, string> = {
  bool: 'bool', uint8: 'uint8', int8: 'int8', int16: 'int16', int32: 'int32', int64: 'int64', float16: 'float16', bfloat16: 'bfloat16', float32: 'float32', float64: 'float64',
};

/** Our decoding of a HostTensor's elements, printed as Python prints them. */
function ourValues(t: HostTensor): number[] {
  const d = t.data;
  const out: number[] = [];
  for (let i = 0; i < d.length; i++) {
    if (t.dtype === 'float16') out.push(float16BitsToNumber(d[i] as number));
    else if (t.dtype === 'bfloat16') out.push(bfloat16BitsToNumber(d[i] as number));
    else out.push(Number(d[i]));
  }
  return out;
}
function pyValue(s: string): number {
  return s === 'inf' ? Infinity : s === '-inf' ? -Infinity : s === 'nan' ? NaN : Number(s);
}

function expectMatchesDump(ours: Record<string, HostTensor>, dump: Dump) {
  expect(Object.keys(ours).sort()).toEqual(Object.keys(dump).sort());
  for (const [k, t] of Object.entries(ours)) {
    const p = dump[k];
    expect(p.dtype, k).toBe(HOST_TO_TORCH[t.dtype]);
    expect(p.shape, k).toEqual([...t.shape]);
    expect(p.hex, k).toBe(hexOf(t));
    if (t.dtype === 'int64') expect(p.values, k).toEqual([...(t.data as BigInt64Array)].map(String));
    else expect(p.values!.map(pyValue), k).toEqual(ourValues(t));
  }
}

const RAW_FIXTURES: Record<string, RawTensor> = {
  'raw.u16': { dtype: 'U16', shape: [3], bytes: new Uint8Array([1, 0, 0xff, 0xff, 0x34, 0x12]) },
  'raw.u32': { dtype: 'U32', shape: [1, 1], bytes: new Uint8Array([0xde, 0xad, 0xbe, 0xef]) },
  'raw.u64': { dtype: 'U64', shape: [1], bytes: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 0x80]) },
  'raw.e4m3': { dtype: 'F8_E4M3', shape: [2, 2], bytes: new Uint8Array([0x38, 0x40, 0xb8, 0x00]) },
  'raw.e5m2': { dtype: 'F8_E5M2', shape: [], bytes: new Uint8Array([0x3c]) },
};

function ourTensors(): Record<string, HostTensor> {
  const rng = new SeededRandom(11);
  const t: Record<string, HostTensor> = {};
  for (const dt of ALL_HOST_DTYPES) {
    t[`${dt}.m`] = randomTensor(rng, dt, [2, 3]);
    t[`${dt}.scalar`] = randomTensor(rng, dt, []);
    t[`${dt}.empty`] = randomTensor(rng, dt, [0, 2]);
  }
  t['float32.special'] = new HostTensor(new Float32Array([NaN, Infinity, -Infinity, -0, 1e-45, 3.4028234663852886e38]), [6], 'float32');
  t['int64.extremes'] = new HostTensor(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, -1n]), [3], 'int64');
  t['bfloat16.special'] = new HostTensor(new Uint16Array([0x7fc0, 0x7f80, 0xff80, 0x8000, 0x0001, 0x7f7f]), [2, 3], 'bfloat16');
  t['float16.special'] = new HostTensor(new Uint16Array([0x7e00, 0x7c00, 0xfc00, 0x8000, 0x0001, 0x7bff]), [6], 'float16');
  t['ünïcode.wéight'] = randomTensor(rng, 'float32', [2]);
  return t;
}

describe.skipIf(!python)('Python reads our safetensors files', () => {
  it('safetensors.torch.load_file reads every dtype, scalars, empty tensors and metadata bit-exactly; save_file of the same tensors gives identical bytes', async () => {
    const tensors = ourTensors();
    const ours = join(tmp.dir, 'ours.safetensors');
    await writeSafetensors(ours, { ...tensors, ...RAW_FIXTURES }, { format: 'pt' });
    const resaved = join(tmp.dir, 'resaved.safetensors');
    const metaFile = join(tmp.dir, 'ours-meta.safetensors');
    const meta = { format: 'pt', note: 'héllo "q"\n\u{1f600}' };
    await writeSafetensors(metaFile, { x: tensors['float32.m'] }, meta);
    const out = runPython(
      DUMP_PY +
        String.raw`
import sys
from safetensors.torch import load_file, save_file
from safetensors import safe_open
src, dst, metafile = sys.argv[1:4]
t = load_file(src)
with safe_open(src, framework="pt") as f: m1 = f.metadata()
save_file(t, dst, metadata={"format": "pt"})
with safe_open(metafile, framework="pt") as f: m2 = f.metadata()
print(json.dumps({"dump": dump(t), "meta": m1, "meta2": m2, "x": dump(load_file(metafile))}))
`,
      [ours, resaved, metaFile],
    ) as { dump: Dump; meta: unknown; meta2: unknown; x: Dump };
    expect(out.meta).toEqual({ format: 'pt' });
    expect(out.meta2).toEqual(meta);
    const raws = Object.fromEntries(Object.keys(RAW_FIXTURES).map((k) => [k, out.dump[k]]));
    for (const k of Object.keys(RAW_FIXTURES)) delete out.dump[k];
    expectMatchesDump(tensors, out.dump);
    expectMatchesDump({ x: tensors['float32.m'] }, out.x);
    for (const [k, r] of Object.entries(RAW_FIXTURES)) {
      expect(raws[k].dtype, k).toBe(TORCH_NAME[r.dtype]);
      expect(raws[k].shape, k).toEqual(r.shape);
      expect(raws[k].hex, k).toBe(Buffer.from(r.bytes).toString('hex'));
    }
    // Python's writer, given the same tensors and metadata, produces the same file byte for byte.
    expect(readFileSync(resaved).equals(readFileSync(ours))).toBe(true);
  });
});

describe.skipIf(!python)('we read files Python wrote', () => {
  it('save_file output of every dtype (incl. uint16/32/64, float8, 0-d, empty) reads back equal with both readers', async () => {
    const path = join(tmp.dir, 'python.safetensors');
    const dump = runPython(
      DUMP_PY +
        String.raw`
import sys
from safetensors.torch import save_file
torch.manual_seed(0)
t = {
  "f64": torch.randn(3, 2, dtype=torch.float64), "f32": torch.randn(4, 5), "f16": torch.randn(7).half(),
  "bf16": torch.randn(2, 3).bfloat16(), "i64": torch.randint(-2**62, 2**62, (5,), dtype=torch.int64),
  "i32": torch.randint(-2**31, 2**31 - 1, (2, 2), dtype=torch.int32), "i16": torch.randint(-2**15, 2**15 - 1, (3,), dtype=torch.int16),
  "i8": torch.randint(-128, 127, (4,), dtype=torch.int8), "u8": torch.randint(0, 255, (1, 4), dtype=torch.uint8),
  "bool": torch.rand(5) > 0.5, "scalar": torch.tensor(3.25), "scalar_i64": torch.tensor(-7), "empty": torch.zeros(0, 3),
  "empty_bool": torch.zeros(2, 0, dtype=torch.bool), "u16": torch.tensor([1, 65535], dtype=torch.uint16),
  "u32": torch.tensor([4000000000], dtype=torch.uint32), "u64": torch.tensor([2**63 + 5], dtype=torch.uint64),
  "f8e4m3": torch.tensor([0.5, -2.0], dtype=torch.float8_e4m3fn), "f8e5m2": torch.tensor([1.5], dtype=torch.float8_e5m2),
  "special": torch.tensor([float("nan"), float("inf"), -0.0]),
}
save_file(t, sys.argv[1], metadata={"format": "pt", "who": "python"})
print(json.dumps(dump(t)))
`,
      [path],
    ) as Dump;
    const raw = new Set(['u16', 'u32', 'u64', 'f8e4m3', 'f8e5m2']);
    const parsed = parseSafetensors(readFileSync(path));
    expect(parsed.metadata).toEqual({ format: 'pt', who: 'python' });
    expect(parsed.keys()).toEqual(Object.keys(dump).sort());
    const file = await SafetensorsFile.open(path);
    try {
      const hostFromBuffer: Record<string, HostTensor> = {};
      const hostFromFile: Record<string, HostTensor> = {};
      for (const k of parsed.keys()) {
        if (raw.has(k)) {
          const r = await file.readRaw(k);
          expect(TORCH_NAME[r.dtype], k).toBe(dump[k].dtype);
          expect(r.shape, k).toEqual(dump[k].shape);
          expect(Buffer.from(r.bytes).toString('hex'), k).toBe(dump[k].hex);
          expect(Buffer.from(parsed.raw(k).bytes).toString('hex'), k).toBe(dump[k].hex);
        } else {
          hostFromBuffer[k] = parsed.tensor(k);
          hostFromFile[k] = await file.read(k);
        }
      }
      const hostDump = Object.fromEntries(Object.entries(dump).filter(([k]) => !raw.has(k)));
      expectMatchesDump(hostFromBuffer, hostDump);
      expectMatchesDump(hostFromFile, hostDump);
    } finally {
      await file.close();
    }
    // Our writer, given what we read, lays the tensors out as Python did: same header size, identical data section
    // (the header itself can differ only in the order of the two metadata keys, which Rust writes in hash order).
    const again = serializeSafetensors(
      { ...Object.fromEntries(parsed.keys().filter((k) => !raw.has(k)).map((k) => [k, parsed.tensor(k)])), ...Object.fromEntries([...raw].map((k) => [k, parsed.raw(k)])) },
      { format: 'pt', who: 'python' },
    );
    const theirs = readFileSync(path);
    expect(again.length).toBe(theirs.length);
    const start = 8 + parsed.headerLength;
    expect(Buffer.from(again.subarray(start)).equals(theirs.subarray(start))).toBe(true);
    expect(parseSafetensors(again).offsetKeys()).toEqual(parsed.offsetKeys());
  });
});

// A small model: an embedding tied to an output layer, a 256x256 linear above the 200KB limit, bf16 and int64 buffers.
const MODEL_PY = String.raw`
import torch
class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(200, 64)
        self.l1 = torch.nn.Linear(64, 256)
        self.bn = torch.nn.BatchNorm1d(256)
        self.l2 = torch.nn.Linear(256, 128)
        self.big = torch.nn.Linear(256, 256)
        self.head = torch.nn.Linear(128, 10)
        self.lowp = torch.nn.Linear(64, 64).to(torch.bfloat16)
        self.out = torch.nn.Linear(64, 200, bias=False)
        self.out.weight = self.embed.weight
`;

describe.skipIf(!python)('saveModelFiles matches Accelerator.save_model', () => {
  it('a sharded model saved by Python (max_shard_size="200KB") loads equal; our save of the same tensors has the same files, index bytes and shard keys; Python loads ours', async () => {
    const pyDir = join(tmp.dir, 'py-model');
    const tsDir = join(tmp.dir, 'ts-model');
    const info = runPython(
      DUMP_PY +
        MODEL_PY +
        String.raw`
import sys
from accelerate import Accelerator
torch.manual_seed(0)
m = Tiny()
m.bn.running_mean.normal_(); m.bn.num_batches_tracked.fill_(7)
Accelerator(cpu=True).save_model(m, sys.argv[1], max_shard_size="200KB")
sd = m.state_dict()
ptr = {}
tied = {}
for k, v in sd.items():
    p = v.untyped_storage().data_ptr()
    if p in ptr: tied[k] = ptr[p]
    else: ptr[p] = k
torch.save(m.state_dict(), sys.argv[1] + ".ref.pt")
print(json.dumps({"order": list(sd.keys()), "tied": tied, "dump": dump(sd)}))
`,
      [pyDir],
    ) as { order: string[]; tied: Record<string, string>; dump: Dump };
    expect(info.tied).toEqual({ 'out.weight': 'embed.weight' });

    // (1) We read Python's sharded save.
    const loaded = await loadModelFiles(pyDir);
    const expected = { ...info.dump };
    delete expected['out.weight']; // Accelerate drops the tied alias when saving
    expectMatchesDump(loaded, expected);
    const pyFiles = readdirSync(pyDir).sort();
    // The fixture exercises the oversize rule: big.weight (262144 B > 200KB) sits alone in the middle shard.
    expect(pyFiles).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      SAFE_WEIGHTS_INDEX_NAME,
    ]);
    expect(parseSafetensors(readFileSync(join(pyDir, 'model-00002-of-00003.safetensors'))).keys()).toEqual(['big.weight']);

    // (2) Our save of the same state dict (same order, alias included) matches Python's layout.
    const sd = new Map<string, HostTensor>();
    for (const k of info.order) sd.set(k, loaded[info.tied[k] ?? k]);
    const res = await saveModelFiles(sd, tsDir, { maxShardSize: '200KB' });
    expect(res.removedSharedTensors).toEqual(['out.weight']);
    expect(readdirSync(tsDir).sort()).toEqual(pyFiles);
    expect(readFileSync(join(tsDir, SAFE_WEIGHTS_INDEX_NAME), 'utf8')).toBe(readFileSync(join(pyDir, SAFE_WEIGHTS_INDEX_NAME), 'utf8'));
    const identical: string[] = [];
    for (const f of pyFiles.filter((n) => n.endsWith('.safetensors'))) {
      const a = readFileSync(join(pyDir, f));
      const b = readFileSync(join(tsDir, f));
      expect(parseSafetensors(b).keys(), f).toEqual(parseSafetensors(a).keys());
      expect(parseSafetensors(b).metadata, f).toEqual({ format: 'pt' });
      if (a.equals(b)) identical.push(f);
    }
    console.log(`[checkpoint python-interop] shards byte-identical to Python's: ${identical.length}/${pyFiles.length - 1}`);
    expect(identical.length).toBe(pyFiles.length - 1);

    // (3) Python's load_checkpoint_in_model reads our folder into a fresh model and gets the original weights.
    const check = runPython(
      MODEL_PY +
        String.raw`
import sys, json
from accelerate.utils import load_checkpoint_in_model
torch.manual_seed(123)
m = Tiny()
load_checkpoint_in_model(m, sys.argv[1])
ref = torch.load(sys.argv[2])
bad = [k for k, v in m.state_dict().items() if not torch.equal(v, ref[k])]
print(json.dumps({"bad": bad, "tied": m.out.weight.data_ptr() == m.embed.weight.data_ptr()}))
`,
      [tsDir, `${pyDir}.ref.pt`],
    );
    expect(check).toEqual({ bad: [], tied: true });
  });
});
