import { describe, expect, it } from 'vitest';
import type { HostTensor } from '../../src/tensor/host-tensor.js';
import { runBackendConformance, type ConformanceOptions, type ConformanceTestApi } from '../../src/testing/conformance.js';
import { ReferenceBackend } from '../../src/testing/reference-backend.js';
import { collectSuite, failingNames } from './collect-suite.js';
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
const collect = (make: () => ReferenceBackend) => collectSuite((api) => runBackendConformance('broken', make, api, options));

async function failingTests(make: () => ReferenceBackend): Promise<string[]> {
  return (await failingNames(collect(make))).map((name) => name.split(' > ').pop()!);
}

describe('the conformance suite catches broken backends', () => {
  it('registers the expected tests, including one round-trip test per claimed dtype', () => {
    const names = collect(() => new ReferenceBackend()).map((t) => t.name);
    expect(names.filter((n) => n.includes('round-trips')).length).toBe(8);
    // capabilities (training + 5 optional: precision, memory, communication, dataParallel, sharding), tensors, randomness, memory, models/autograd/optimizers, optional capabilities
    expect(names.length).toBe(6 + 8 + 7 + 3 + 2 + 8 + 7);
    expect(names[0]).toBe('backend conformance: broken > capabilities > has the models, autograd, optimizers and rng handlers training needs, each with its required methods');
    expect(names).toContain('backend conformance: broken > tensors > fromHost/toHost round-trips float32 exactly (matrix, scalar, empty)');
  });

  it('without fixtures, only the capability, tensor, RNG-state and memory checks are registered', () => {
    const tests: string[] = [];
    runBackendConformance('bare', () => new ReferenceBackend(), {
      describe: (_n, fn) => fn(),
      it: (n) => tests.push(n),
      expect: expect as unknown as ConformanceTestApi['expect'],
    });
    expect(tests.length).toBe(6 + 1 + 7 + 1 + 2);
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
    }
    const make = () => {
      const b = new Broken();
      const { autograd, models, optimizers } = new ReferenceBackend();
      Object.assign(b.autograd, {
        clipGradNorm(params: RefTensor[], maxNorm: number, normType?: number): number {
          autograd.clipGradNorm(params, maxNorm, normType);
          return autograd.clipGradNorm(params, Infinity, normType); // returns the post-clip norm
        },
        backward(loss: RefTensor | (() => RefTensor)): void {
          autograd.backward(loss, { scale: 1 }); // ignores scale
        },
      });
      Object.assign(b.models, {
        loadStateDict(model: RefModule, state: Record<string, RefTensor | HostTensor>): void {
          models.loadStateDict(model, state, { strict: false }); // ignores strict
        },
      });
      Object.assign(b.optimizers, {
        zeroGrad(optimizer: RefOptimizer): void {
          optimizers.zeroGrad(optimizer, false); // never sets to none
        },
      });
      return b;
    };
    expect((await failingTests(make)).sort()).toEqual(
      [
        'fromHost/toHost round-trips float64 exactly (matrix, scalar, empty)',
        'narrow takes a slice along a dimension and leaves the input unchanged',
        'narrow rejects a slice past the end of the dimension', // the shifted slice fits, so no error
        'clipGradNorm returns the norm before clipping and scales gradients down to maxNorm',
        'strict loadStateDict rejects a missing key and names it; non-strict loads the rest',
        'optimizers.zeroGrad zero-fills gradients, or drops them with setToNone',
        'gradients accumulate across backward calls; scale multiplies them; a loss closure works',
        // the scaler test poisons gradients through backward's scale
        'precision.createGradScaler (if provided): clean steps step, inf/NaN skips and backs off, clean steps grow the scale',
      ].sort(),
    );
  });

  it('catches wrong gradients, an RNG that ignores its seed, and ordinary errors taken for OOM', async () => {
    const make = () => {
      const b = new ReferenceBackend();
      const { autograd } = new ReferenceBackend();
      Object.assign(b.autograd, {
        grad(param: RefTensor): RefTensor | null {
          const g = autograd.grad(param);
          return g && param.shape.length === 2 ? g.mul(1.01) : g; // 1 % off on weights
        },
      });
      Object.assign(b.rng, {
        manualSeed(): void {
          // ignores the seed
        },
      });
      Object.assign(b.memory, { isOutOfMemoryError: () => true });
      return b;
    };
    const failed = await failingTests(make);
    expect(failed).toContain('backward gradients equal central finite differences');
    expect(failed).toContain('rng.manualSeed makes the RNG state deterministic and rng.setState restores it');
    expect(failed).toContain('rng.manualSeed makes model initialisation reproducible');
    expect(failed).toContain('memory.isOutOfMemoryError (if provided) is false for ordinary errors and non-errors');
    expect(failed).not.toContain('state dicts round-trip through host tensors and backend tensors');
  });

  it('a backend without a capability training needs fails the capabilities check, and each test that uses it names it', async () => {
    const b = new ReferenceBackend();
    (b as { optimizers?: unknown }).optimizers = undefined;
    const errors = new Map<string, string>();
    for (const t of collect(() => b)) {
      try {
        await t.fn();
      } catch (e) {
        errors.set(t.name.split(' > ').pop()!, (e as Error).message);
      }
    }
    expect(errors.has('has the models, autograd, optimizers and rng handlers training needs, each with its required methods')).toBe(true);
    expect(errors.get('an SGD step moves every parameter by -lr * grad and lowers the loss')).toMatch(
      /the broken conformance suite needs the "optimizers" capability .* which the "reference" backend does not provide/,
    );
    expect(errors.has('state dicts round-trip through host tensors and backend tensors')).toBe(false);
  });

  it('skips the tests of absent optional capabilities through the runner context, saying what is missing', async () => {
    const tests = collect(() => new ReferenceBackend());
    const run = async (name: string) => {
      const notes: string[] = [];
      await tests.find((t) => t.name.endsWith(name))!.fn({ skip: (note?: string) => notes.push(note ?? '') });
      return notes;
    };
    // the reference backend has no process groups and no memory.info
    expect(await run('optional "communication" capability (if provided) has its required methods')).toEqual([
      'the reference backend has no "communication" capability',
    ]);
    expect(await run('memory.info (if provided) reports non-negative byte counts for every device')).toEqual(['the reference backend has no memory.info()']);
    // present ones run
    expect(await run('optional "precision" capability (if provided) has its required methods')).toEqual([]);
    expect(await run('precision.autocast (if provided) returns the callback result and propagates its errors')).toEqual([]);
  });
});
