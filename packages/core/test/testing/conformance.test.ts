import { describe, expect, it } from 'vitest';
import type { HostTensor } from '../../src/tensor/host-tensor.js';
import { runBackendConformance, type ConformanceOptions, type ConformanceTestApi } from '../../src/testing/conformance.js';
import { ReferenceBackend } from '../../src/testing/reference-backend.js';
import { LinearModel, type RefModule } from '../../src/testing/reference-nn.js';
import { SGD, type RefOptimizer } from '../../src/testing/reference-optim.js';
import { mseLoss, type RefTensor } from '../../src/testing/reference-tensor.js';

const options: ConformanceOptions<RefTensor, RefModule, RefOptimizer> = {
  dtypes: ['float32', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'],
  fixtures: {
    makeLinearModel: (inFeatures, outFeatures) => new LinearModel(inFeatures, outFeatures),
    forward: (model, input) => model.forward(input),
    makeSGD: (params, lr) => new SGD(params, { lr }),
    mseLoss,
  },
};

// The reference backend, with two simulated accelerator devices, passes the whole suite.
runBackendConformance('reference', () => new ReferenceBackend({ devices: ['cuda:0', 'cuda:1'] }), { describe, it, expect }, options);

/** Collect the suite's tests instead of registering them, so they can be run against a broken backend. */
function collect(make: () => ReferenceBackend): Array<{ name: string; fn: () => void | Promise<void> }> {
  const tests: Array<{ name: string; fn: () => void | Promise<void> }> = [];
  const prefix: string[] = [];
  const api: ConformanceTestApi = {
    describe(name, fn) {
      prefix.push(name);
      fn();
      prefix.pop();
    },
    it(name, fn) {
      tests.push({ name: [...prefix, name].join(' > '), fn });
    },
    expect: expect as unknown as ConformanceTestApi['expect'],
  };
  runBackendConformance('broken', make, api, options);
  return tests;
}

async function failingTests(make: () => ReferenceBackend): Promise<string[]> {
  const failed: string[] = [];
  for (const t of collect(make)) {
    try {
      await t.fn();
    } catch {
      failed.push(t.name.split(' > ').pop()!);
    }
  }
  return failed;
}

describe('the conformance suite catches broken backends', () => {
  it('registers the expected tests, including one round-trip test per claimed dtype', () => {
    const names = collect(() => new ReferenceBackend()).map((t) => t.name);
    expect(names.filter((n) => n.includes('round-trips')).length).toBe(8);
    expect(names.length).toBe(8 + 7 + 3 + 1 + 8 + 2);
    expect(names[0]).toBe('backend conformance: broken > tensors > fromHost/toHost round-trips float32 exactly (matrix, scalar, empty)');
  });

  it('without fixtures, only the tensor, RNG-state and error checks are registered', () => {
    const tests: string[] = [];
    runBackendConformance('bare', () => new ReferenceBackend(), {
      describe: (_n, fn) => fn(),
      it: (n) => tests.push(n),
      expect: expect as unknown as ConformanceTestApi['expect'],
    });
    expect(tests.length).toBe(1 + 7 + 1 + 1);
  });

  it('flags each broken method in the test that covers it, and only there', async () => {
    class Broken extends ReferenceBackend {
      override narrow(t: RefTensor, dim: number, start: number, length: number): RefTensor {
        return super.narrow(t, dim, Math.max(0, start - 1), length); // off by one
      }
      override toHost(t: RefTensor): HostTensor {
        const h = super.toHost(t);
        if (h.dtype === 'float64') (h.data as Float64Array)[0] = Math.fround(h.data[0] as number); // silent downcast
        return h;
      }
      override clipGradNorm(params: RefTensor[], maxNorm: number, normType?: number): number {
        super.clipGradNorm(params, maxNorm, normType);
        return super.clipGradNorm(params, Infinity, normType); // returns the post-clip norm
      }
      override loadStateDict(model: RefModule, state: Record<string, RefTensor | HostTensor>): void {
        super.loadStateDict(model, state, { strict: false }); // ignores strict
      }
      override optimizerZeroGrad(optimizer: RefOptimizer): void {
        optimizer.zeroGrad(false); // never sets to none
      }
      override backward(loss: RefTensor | (() => RefTensor)): void {
        super.backward(loss, { scale: 1 }); // ignores scale
      }
    }
    expect((await failingTests(() => new Broken())).sort()).toEqual(
      [
        'fromHost/toHost round-trips float64 exactly (matrix, scalar, empty)',
        'narrow takes a slice along a dimension and leaves the input unchanged',
        'narrow rejects a slice past the end of the dimension', // the shifted slice fits, so no error
        'clipGradNorm returns the norm before clipping and scales gradients down to maxNorm',
        'strict loadStateDict rejects a missing key and names it; non-strict loads the rest',
        'optimizerZeroGrad zero-fills gradients, or drops them with setToNone',
        'gradients accumulate across backward calls; scale multiplies them; a loss closure works',
        // the scaler test poisons gradients through backward's scale
        'createGradScaler (if provided): clean steps step, inf/NaN skips and backs off, clean steps grow the scale',
      ].sort(),
    );
  });

  it('catches wrong gradients, an RNG that ignores its seed, and ordinary errors taken for OOM', async () => {
    class Broken extends ReferenceBackend {
      override grad(param: RefTensor): RefTensor | null {
        const g = super.grad(param);
        return g && param.shape.length === 2 ? g.mul(1.01) : g; // 1 % off on weights
      }
      override manualSeed(): void {
        // ignores the seed
      }
      override isOutOfMemoryError(): boolean {
        return true;
      }
    }
    const failed = await failingTests(() => new Broken());
    expect(failed).toContain('backward gradients equal central finite differences');
    expect(failed).toContain('manualSeed makes the RNG state deterministic and setRngState restores it');
    expect(failed).toContain('manualSeed makes model initialisation reproducible');
    expect(failed).toContain('isOutOfMemoryError is false for ordinary errors and non-errors');
    expect(failed).not.toContain('state dicts round-trip through host tensors and backend tensors');
  });
});
