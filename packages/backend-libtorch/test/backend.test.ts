import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { runBackendConformance } from '@accelerate/core/testing';
import * as torch from '../src/index.js';

const { nn, optim } = torch;

runBackendConformance('libtorch', () => torch.libtorch().init(), { describe, it, expect } as never, {
  dtypes: ['float32', 'float64', 'float16', 'bfloat16', 'int8', 'int16', 'int32', 'int64', 'uint8', 'bool'],
  fixtures: {
    makeLinearModel: (i: number, o: number) => new nn.Linear(i, o),
    forward: (m: torch.nn.Module, x: torch.Tensor) => m.forward(x),
    makeSGD: (params: torch.Tensor[], lr: number) => new optim.SGD(params, { lr }),
    mseLoss: (a: torch.Tensor, b: torch.Tensor) => nn.functional.mseLoss(a, b),
  },
});

describe('LibtorchBackend specifics', () => {
  const backend = new torch.LibtorchBackend();

  it('reports its name, libtorch version and the cpu device', () => {
    expect(backend.name).toBe('libtorch');
    expect(backend.version).toBe(`libtorch ${torch.version}`);
    expect(backend.devices().at(-1)).toEqual({ name: 'cpu', kind: 'cpu' });
  });

  it('lists one cuda:<i> per GPU, as many as torch.cuda.device_count() where Python torch is present', () => {
    const cuda = backend.devices().filter((d) => d.kind === 'cuda');
    expect(cuda.map((d) => d.name)).toEqual(cuda.map((_d, i) => `cuda:${i}`));
    const python = process.env.ACCELERATE_TS_PYTHON;
    if (!python) {
      console.log('skipping the comparison with torch.cuda.device_count(): ACCELERATE_TS_PYTHON is not set');
      return;
    }
    const count = Number(execFileSync(python, ['-c', 'import torch; print(torch.cuda.device_count())'], { encoding: 'utf8' }).trim());
    expect(cuda).toHaveLength(count);
  });

  it('bf16: wrapForwardForPrecision runs matmuls in bfloat16 under autocast and returns float32', () => {
    torch.manualSeed(0);
    const lin = new nn.Linear(16, 4);
    const x = torch.randn([8, 16]);
    const raw = lin.forward(x);
    const inner = backend.precision.autocast('bf16', () => lin.forward(x));
    expect(inner.dtype).toBe('bfloat16');
    backend.precision.wrapForwardForPrecision(lin, 'bf16');
    const out = lin.forward(x);
    expect(out.dtype).toBe('float32');
    // the bf16 result equals the bf16 computation, and differs from fp32 by bf16 rounding only
    expect(out.equal(inner.float())).toBe(true);
    expect(out.sub(raw).abs().max().item()).toBeLessThan(0.05);
    expect(out.equal(raw)).toBe(false);
    // autocast is off again afterwards, and unwrapForwardForPrecision restores fp32 forward
    expect(torch.isAutocastEnabled()).toBe(false);
    backend.precision.unwrapForwardForPrecision(lin);
    expect(lin.forward(x).equal(raw)).toBe(true);
    expect(() => backend.precision.autocast('fp16', () => 1)).toThrow(/not supported on CPU/);
  });

  it('isOutOfMemoryError recognises an allocation failure', () => {
    let err: unknown;
    try {
      torch.empty([2 ** 50]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect(backend.memory.isOutOfMemoryError(err)).toBe(true);
    expect(backend.memory.isOutOfMemoryError(new Error('shape mismatch'))).toBe(false);
  });

  it('libtorch() is a core BackendFactory', async () => {
    const b = await torch.libtorch().init();
    expect(b).toBeInstanceOf(torch.LibtorchBackend);
  });
});
