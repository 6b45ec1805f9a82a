/**
 * The backend conformance suite: checks that a {@link Backend} behaves the
 * way core relies on. Every backend (ours and third parties') runs it from
 * its own tests; it is test-runner agnostic — pass your runner's
 * `describe`, `it` and `expect` (vitest and Jest fit as they are):
 *
 * ```ts
 * import { describe, it, expect } from 'vitest';
 * import { runBackendConformance } from '@accelerate/core/testing';
 * runBackendConformance('libtorch', () => libtorch().init(), { describe, it, expect }, {
 *   dtypes: ['float32', 'float64', 'int64'],
 *   fixtures: { makeLinearModel, forward, makeSGD, mseLoss },
 * });
 * ```
 *
 * The root and the capabilities training needs (`models`, `autograd`,
 * `optimizers`, `rng`) are checked always; optional capabilities and
 * optional methods are checked when the backend has them, and their tests are
 * skipped (with the runner's dynamic skip, e.g. vitest's `context.skip`)
 * when it does not.
 * @module
 */
import { requireCapability, type Backend, type BackendCapabilityName } from '../interfaces/backend.js';
import { HostTensor, hostArrayConstructor, type DType, type HostArray } from '../tensor/host-tensor.js';

/** The subset of `expect(...)` matchers the suite uses. */
export interface ConformanceMatchers {
  toBe(expected: unknown): void;
  toEqual(expected: unknown): void;
  toBeCloseTo(expected: number, numDigits?: number): void;
  toBeLessThan(expected: number): void;
  toBeGreaterThan(expected: number): void;
  toBeLessThanOrEqual(expected: number): void;
  toBeNull(): void;
  toThrow(expected?: string | RegExp): void;
  readonly not: ConformanceMatchers;
}

/** The test-runner functions the suite registers its tests with. */
export interface ConformanceTestApi {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => void | Promise<void>): void;
  expect(actual: unknown, message?: string): ConformanceMatchers;
}

/**
 * How the suite builds and runs a small model on the backend under test.
 * `makeLinearModel` must initialise its parameters from the backend's
 * default generator (so `manualSeed` makes it reproducible) and create them
 * on the device where `fromHost` puts tensors by default.
 */
export interface ConformanceFixtures<T, M, O> {
  /** A fully connected layer with `inFeatures` inputs and `outFeatures` outputs (weight and bias). */
  makeLinearModel(inFeatures: number, outFeatures: number): M | Promise<M>;
  /** Run the model on a `[batch, inFeatures]` input. */
  forward(model: M, input: T): T;
  /** Plain SGD (no momentum, no weight decay) over `params`. */
  makeSGD(params: T[], lr: number): O;
  /** Mean squared error, a one-element tensor. */
  mseLoss(pred: T, target: T): T;
}

/** Options of {@link runBackendConformance}. */
export interface ConformanceOptions<T, M, O> {
  /** dtypes the backend claims to store; each must round-trip through fromHost/toHost (default `['float32']`). */
  dtypes?: DType[];
  /** Model fixtures; without them the model, autograd and optimizer checks are not registered. */
  fixtures?: ConformanceFixtures<T, M, O>;
  /** Relative tolerance of the finite-difference gradient check (default 1e-3). */
  gradientTolerance?: number;
}

/**
 * Methods each capability handler must have when it is present (the
 * non-optional members of its interface). `models`, `autograd`, `optimizers`
 * and `rng` must be present: training needs them.
 */
const REQUIRED_METHODS: Record<BackendCapabilityName, readonly string[]> = {
  models: ['isModel', 'namedParameters', 'stateDict', 'loadStateDict', 'moveModel', 'setTrainingMode'],
  autograd: ['backward', 'grad', 'clipGradNorm'],
  optimizers: ['isOptimizer', 'step', 'zeroGrad', 'params'],
  rng: ['manualSeed', 'getState', 'setState'],
  precision: [],
  memory: ['isOutOfMemoryError'],
  communication: ['initProcessGroup'],
  dataParallel: ['wrap', 'unwrap', 'setGradientSync'],
  sharding: ['numel', 'requiresGrad', 'view', 'flatten', 'copy', 'addInPlace', 'zero', 'freeStorage', 'allocateStorage', 'hasStorage', 'setData', 'grad', 'setGrad', 'leafView', 'addTensorGradHook', 'queueBackwardCallback', 'isGradEnabled'],
};

/** Capabilities every training backend provides. */
const TRAINING_CAPABILITIES = ['models', 'autograd', 'optimizers', 'rng'] as const;

/** What a test function may receive from the runner: vitest passes a context whose `skip` marks the test skipped. */
interface RunnerContext {
  skip?: (note?: string) => void;
}

/** Sample data for `dtype` that must survive a round trip bit for bit. */
function sampleHost(dtype: DType, shape: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const Ctor = hostArrayConstructor(dtype);
  let data: HostArray;
  if (Ctor === BigInt64Array) {
    // Beyond 2^53 on purpose: int64 must not go through a double.
    data = BigInt64Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1n : -1n) * (2n ** 60n + BigInt(i * 7 + 1)));
  } else {
    const value = (i: number): number => {
      switch (dtype) {
        case 'float32':
          return (i % 2 === 0 ? 1 : -1) * (i * 0.75 + 0.125);
        case 'float64':
          return (i - 2.5) * Math.PI; // not representable in float32: catches silent downcasts
        case 'float16':
          return 0x3c00 + i; // raw bits of finite halves
        case 'bfloat16':
          return 0x3f80 + i;
        case 'int32':
          return (i % 2 === 0 ? 1 : -1) * (i * 100_000 + 7);
        case 'int16':
          return i * 1000 - 3000;
        case 'int8':
          return (i * 17) % 200 - 60;
        case 'uint8':
          return (i * 23) % 256;
        case 'bool':
          return i % 3 === 0 ? 1 : 0;
        default:
          return i;
      }
    };
    data = (Ctor as Float64ArrayConstructor).from({ length: n }, (_, i) => value(i)) as HostArray;
  }
  return new HostTensor(data, shape, dtype);
}

function f32(values: number[], shape: number[]): HostTensor {
  return HostTensor.fromNumbers(values, shape, 'float32');
}

function numbers(h: HostTensor): number[] {
  return h.toArray();
}

/** Register the conformance tests for backend `name`. `makeBackend` is called once, lazily. */
export function runBackendConformance<T, M, O, S>(
  name: string,
  makeBackend: () => Backend<T, M, O, S> | Promise<Backend<T, M, O, S>>,
  t: ConformanceTestApi,
  options: ConformanceOptions<T, M, O> = {},
): void {
  const { describe, it, expect } = t;
  const dtypes = options.dtypes ?? ['float32'];
  const fixtures = options.fixtures;
  const gradTol = options.gradientTolerance ?? 1e-3;
  let backendPromise: Promise<Backend<T, M, O, S>> | undefined;
  const getBackend = () => (backendPromise ??= Promise.resolve().then(makeBackend));

  type B = Backend<T, M, O, S>;
  const feature = `the ${name} conformance suite`;
  // Capability handlers; a missing one fails the test with the error naming it.
  const models = (b: B) => requireCapability(b, 'models', feature);
  const autograd = (b: B) => requireCapability(b, 'autograd', feature);
  const optimizers = (b: B) => requireCapability(b, 'optimizers', feature);
  const rng = (b: B) => requireCapability(b, 'rng', feature);

  /**
   * Register a test of something optional: `present` says whether the backend
   * has it; when it does not, the test is skipped where the runner can skip at
   * run time (vitest), and passes without checking elsewhere.
   */
  const itIfPresent = (title: string, present: (b: B) => boolean, why: string, fn: (b: B) => void | Promise<void>) =>
    it(title, async (...args: unknown[]) => {
      const b = await getBackend();
      if (!present(b)) {
        const ctx = args[0] as RunnerContext | undefined;
        if (typeof ctx?.skip === 'function') ctx.skip(`the ${b.name} backend ${why}`);
        return;
      }
      await fn(b);
    });
  const hasMethod = (handler: object | undefined, method: string): boolean =>
    handler !== undefined && typeof (handler as Record<string, unknown>)[method] === 'function';

  const values = (b: Backend<T, M, O, S>, x: T): number[] => numbers(b.toHost(x));
  const scalar = (b: Backend<T, M, O, S>, x: T): number => values(b, x)[0];
  const expectClose = (actual: number[], expected: number[], tol: number, what: string) => {
    expect(actual.length, `${what}: length`).toBe(expected.length);
    actual.forEach((a, i) => {
      expect(Math.abs(a - expected[i]), `${what}[${i}]: ${a} vs ${expected[i]}`).toBeLessThanOrEqual(
        tol * Math.max(1, Math.abs(expected[i])),
      );
    });
  };

  describe(`backend conformance: ${name}`, () => {
    describe('capabilities', () => {
      it('has the models, autograd, optimizers and rng handlers training needs, each with its required methods', async () => {
        const b = await getBackend();
        for (const cap of TRAINING_CAPABILITIES) {
          const handler = b[cap] as object | undefined;
          expect(handler !== null && typeof handler === 'object', `the "${cap}" capability handler`).toBe(true);
          for (const m of REQUIRED_METHODS[cap]) expect(hasMethod(handler, m), `${cap}.${m}()`).toBe(true);
        }
      });

      for (const cap of ['precision', 'memory', 'communication', 'dataParallel', 'sharding'] as const) {
        itIfPresent(
          `optional "${cap}" capability (if provided) has its required methods`,
          (b) => b[cap] !== undefined,
          `has no "${cap}" capability`,
          (b) => {
            const handler = b[cap] as object;
            expect(typeof handler, `the "${cap}" capability handler`).toBe('object');
            for (const m of REQUIRED_METHODS[cap]) expect(hasMethod(handler, m), `${cap}.${m}()`).toBe(true);
          },
        );
      }
    });

    describe('tensors', () => {
      for (const dtype of dtypes) {
        it(`fromHost/toHost round-trips ${dtype} exactly (matrix, scalar, empty)`, async () => {
          const b = await getBackend();
          for (const shape of [[2, 3], [], [0, 4]]) {
            const h = sampleHost(dtype, shape);
            const x = b.fromHost(h);
            expect(b.isTensor(x)).toBe(true);
            expect(b.shape(x)).toEqual(shape);
            expect(b.dtype(x)).toBe(dtype);
            const back = b.toHost(x);
            expect(back.dtype).toBe(dtype);
            expect([...back.shape]).toEqual(shape);
            expect(back.data.constructor).toBe(hostArrayConstructor(dtype));
            expect(Array.from(back.data as ArrayLike<unknown>)).toEqual(Array.from(h.data as ArrayLike<unknown>));
          }
        });
      }

      it('isTensor accepts its own tensors only', async () => {
        const b = await getBackend();
        expect(b.isTensor(b.fromHost(f32([1, 2], [2])))).toBe(true);
        for (const other of [f32([1, 2], [2]), new Float32Array(2), [1, 2], 3, null, undefined, {}]) {
          expect(b.isTensor(other)).toBe(false);
        }
      });

      it('narrow takes a slice along a dimension and leaves the input unchanged', async () => {
        const b = await getBackend();
        const x = b.fromHost(f32([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [3, 4]));
        const rows = b.narrow(x, 0, 1, 2);
        expect(b.shape(rows)).toEqual([2, 4]);
        expect(values(b, rows)).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
        const cols = b.narrow(x, 1, 1, 2);
        expect(b.shape(cols)).toEqual([3, 2]);
        expect(values(b, cols)).toEqual([1, 2, 5, 6, 9, 10]);
        const empty = b.narrow(x, 0, 3, 0);
        expect(b.shape(empty)).toEqual([0, 4]);
        const cube = b.fromHost(f32([...Array(12).keys()], [2, 3, 2]));
        const mid = b.narrow(cube, 1, 2, 1);
        expect(b.shape(mid)).toEqual([2, 1, 2]);
        expect(values(b, mid)).toEqual([4, 5, 10, 11]);
        expect(values(b, x)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      });

      it('narrow rejects a slice past the end of the dimension', async () => {
        const b = await getBackend();
        const x = b.fromHost(f32([0, 1, 2, 3, 4, 5], [2, 3]));
        expect(() => b.narrow(x, 1, 2, 2)).toThrow();
      });

      it('cat concatenates along dim 0 and dim 1', async () => {
        const b = await getBackend();
        const a = b.fromHost(f32([1, 2, 3, 4], [2, 2]));
        const c = b.fromHost(f32([5, 6], [1, 2]));
        const rows = b.cat([a, c], 0);
        expect(b.shape(rows)).toEqual([3, 2]);
        expect(values(b, rows)).toEqual([1, 2, 3, 4, 5, 6]);
        const d = b.fromHost(f32([7, 8, 9, 10, 11, 12], [2, 3]));
        const cols = b.cat([a, d], 1);
        expect(b.shape(cols)).toEqual([2, 5]);
        expect(values(b, cols)).toEqual([1, 2, 7, 8, 9, 3, 4, 10, 11, 12]);
        const one = b.cat([a], 0);
        expect(values(b, one)).toEqual([1, 2, 3, 4]);
      });

      it('fullLike takes dtype and device from its model tensor', async () => {
        const b = await getBackend();
        for (const dtype of dtypes.filter((d) => d !== 'float16' && d !== 'bfloat16')) {
          const like = b.fromHost(sampleHost(dtype, [2]));
          const filled = b.fullLike(like, [2, 3], 1);
          expect(b.shape(filled)).toEqual([2, 3]);
          expect(b.dtype(filled)).toBe(dtype);
          expect(b.device(filled)).toBe(b.device(like));
          expect(values(b, filled)).toEqual([1, 1, 1, 1, 1, 1]);
        }
        const like = b.fromHost(f32([0], [1]));
        expect(values(b, b.fullLike(like, [3], -2.5))).toEqual([-2.5, -2.5, -2.5]);
      });

      it('mulScalar returns a new tensor of the same dtype and leaves the input unchanged', async () => {
        const b = await getBackend();
        const x = b.fromHost(f32([1, -2, 0.5, 4], [2, 2]));
        const y = b.mulScalar(x, -1.5);
        expect(b.shape(y)).toEqual([2, 2]);
        expect(b.dtype(y)).toBe('float32');
        expect(values(b, y)).toEqual([-1.5, 3, -0.75, -6]);
        expect(values(b, x)).toEqual([1, -2, 0.5, 4]);
        if (dtypes.includes('int64')) {
          const i = b.fromHost(HostTensor.fromNumbers([1, -2, 3], [3], 'int64'));
          const j = b.mulScalar(i, 3);
          expect(b.dtype(j)).toBe('int64');
          expect(values(b, j)).toEqual([3, -6, 9]);
        }
      });

      it('toDevice reaches every listed device and returns the tensor itself when already there', async () => {
        const b = await getBackend();
        const devices = b.devices();
        expect(devices.length).toBeGreaterThan(0);
        const base = b.fromHost(f32([1, 2, 3], [3]), devices[devices.length - 1].name);
        for (const d of devices) {
          expect(typeof d.kind).toBe('string');
          const moved = b.toDevice(base, d.name);
          expect(b.device(moved)).toBe(d.name);
          expect(values(b, moved)).toEqual([1, 2, 3]);
          expect(b.toDevice(moved, d.name)).toBe(moved);
        }
      });
    });

    describe('randomness', () => {
      it('rng.manualSeed makes the RNG state deterministic and rng.setState restores it', async () => {
        const r = rng(await getBackend());
        r.manualSeed(1234);
        const s1 = Array.from(r.getState());
        r.manualSeed(1234);
        expect(Array.from(r.getState())).toEqual(s1);
        r.manualSeed(4321);
        expect(Array.from(r.getState())).not.toEqual(s1);
        r.setState(Uint8Array.from(s1));
        expect(Array.from(r.getState())).toEqual(s1);
      });

      if (fixtures) {
        const initial = async (b: Backend<T, M, O, S>): Promise<number[]> => {
          const m = await fixtures.makeLinearModel(3, 2);
          return models(b).namedParameters(m).flatMap(([, p]) => values(b, p));
        };

        it('rng.manualSeed makes model initialisation reproducible', async () => {
          const b = await getBackend();
          rng(b).manualSeed(7);
          const first = await initial(b);
          rng(b).manualSeed(7);
          expect(await initial(b)).toEqual(first);
          rng(b).manualSeed(8);
          expect(await initial(b)).not.toEqual(first);
        });

        it('rng.getState/setState replay the random stream', async () => {
          const b = await getBackend();
          rng(b).manualSeed(99);
          await initial(b); // advance the stream
          const state = rng(b).getState();
          const first = await initial(b);
          const second = await initial(b);
          expect(second).not.toEqual(first);
          rng(b).setState(state);
          expect(await initial(b)).toEqual(first);
        });
      }
    });

    describe('memory', () => {
      itIfPresent(
        'memory.isOutOfMemoryError (if provided) is false for ordinary errors and non-errors',
        (b) => hasMethod(b.memory, 'isOutOfMemoryError'),
        'has no "memory" capability',
        (b) => {
          for (const e of [new Error('boom'), new TypeError('x is not a function'), new RangeError('bad index'), 'oops', 42, null, undefined, {}]) {
            expect(b.memory!.isOutOfMemoryError(e)).toBe(false);
          }
        },
      );

      itIfPresent(
        'memory.info (if provided) reports non-negative byte counts for every device',
        (b) => hasMethod(b.memory, 'info'),
        'has no memory.info()',
        (b) => {
          for (const d of b.devices()) {
            const info = b.memory!.info!(d.name);
            expect(typeof info.allocated, `allocated bytes on ${d.name}`).toBe('number');
            expect(info.allocated >= 0, `allocated bytes on ${d.name} >= 0`).toBe(true);
            if (info.reserved !== undefined) expect(info.reserved >= info.allocated, `reserved >= allocated on ${d.name}`).toBe(true);
          }
        },
      );
    });

    if (!fixtures) return;
    const fx = fixtures;

    // A fixed batch: 4 samples, 3 features, 2 outputs.
    const X = f32([0.5, -1, 2, 1.5, 0.25, -0.5, -1, 1, 1, 2, -2, 0.5], [4, 3]);
    const Y = f32([1, 0, -1, 2, 0.5, 0.5, 3, -1], [4, 2]);

    const setup = async (seed = 0, lr = 0.05) => {
      const b = await getBackend();
      rng(b).manualSeed(seed);
      const model = await fx.makeLinearModel(3, 2);
      const params = models(b).namedParameters(model).map(([, p]) => p);
      const opt = fx.makeSGD(params, lr);
      const x = b.fromHost(X);
      const y = b.fromHost(Y);
      const loss = () => fx.mseLoss(fx.forward(model, x), y);
      const grads = () => models(b).namedParameters(model).map(([n, p]) => {
        const g = autograd(b).grad(p);
        return [n, g === null ? null : values(b, g)] as const;
      });
      return { b, model, params, opt, loss, grads };
    };

    describe('models, autograd and optimizers', () => {
      it('isModel / isOptimizer recognise the fixtures; parameter names are unique and match the optimizer', async () => {
        const { b, model, opt } = await setup();
        expect(models(b).isModel(model)).toBe(true);
        expect(models(b).isModel({})).toBe(false);
        expect(optimizers(b).isOptimizer(opt)).toBe(true);
        expect(optimizers(b).isOptimizer(model)).toBe(false);
        const named = models(b).namedParameters(model);
        const names = named.map(([n]) => n);
        expect(new Set(names).size).toBe(names.length);
        expect(names.length).toBeGreaterThan(0);
        expect(models(b).namedParameters(model).map(([n]) => n)).toEqual(names);
        expect(optimizers(b).params(opt).length).toBe(named.length);
        expect(named.reduce((s, [, p]) => s + values(b, p).length, 0)).toBe(3 * 2 + 2);
      });

      it('backward gradients equal central finite differences', async () => {
        const { b, model, loss, grads } = await setup(3);
        autograd(b).backward(loss(), { scale: 1 });
        const analytic = new Map(grads());
        const hostState = Object.fromEntries(Object.entries(models(b).stateDict(model)).map(([k, v]) => [k, b.toHost(v)]));
        const eps = 1e-2;
        for (const [pname] of models(b).namedParameters(model)) {
          const base = hostState[pname];
          expect(base, `state dict has parameter ${pname}`).not.toBe(undefined);
          const g = analytic.get(pname);
          expect(g, `gradient of ${pname}`).not.toBeNull();
          const fd: number[] = [];
          for (let i = 0; i < base.numel; i++) {
            const at = (delta: number): [number, number] => {
              const data = Float32Array.from(base.data as Float32Array);
              data[i] += delta;
              models(b).loadStateDict(model, { ...hostState, [pname]: new HostTensor(data, base.shape, 'float32') });
              return [scalar(b, loss()), data[i]];
            };
            const [fPlus, xPlus] = at(eps);
            const [fMinus, xMinus] = at(-eps);
            fd.push((fPlus - fMinus) / (xPlus - xMinus));
          }
          models(b).loadStateDict(model, hostState);
          expectClose(g!, fd, gradTol, `d loss / d ${pname}`);
        }
      });

      it('an SGD step moves every parameter by -lr * grad and lowers the loss', async () => {
        const lr = 0.05;
        const { b, model, opt, loss, grads } = await setup(4, lr);
        const before = scalar(b, loss());
        const l = loss();
        autograd(b).backward(l, { scale: 1 });
        const g = grads();
        const p0 = models(b).namedParameters(model).map(([, p]) => values(b, p));
        optimizers(b).step(opt);
        const p1 = models(b).namedParameters(model).map(([, p]) => values(b, p));
        p1.forEach((p, k) => expectClose(p, p0[k].map((v, i) => v - lr * g[k][1]![i]), 1e-5, `param ${g[k][0]}`));
        expect(scalar(b, loss())).toBeLessThan(before);
      });

      it('gradients accumulate across backward calls; scale multiplies them; a loss closure works', async () => {
        const { b, opt, loss, grads } = await setup(5);
        autograd(b).backward(loss(), { scale: 1 });
        const once = grads().map(([, g]) => g!);
        autograd(b).backward(loss(), { scale: 1 });
        grads().forEach(([n, g], k) => expectClose(g!, once[k].map((v) => 2 * v), 1e-5, `accumulated grad of ${n}`));
        optimizers(b).zeroGrad(opt, true);
        autograd(b).backward(loss(), { scale: 0.25 });
        grads().forEach(([n, g], k) => expectClose(g!, once[k].map((v) => 0.25 * v), 1e-5, `scaled grad of ${n}`));
        optimizers(b).zeroGrad(opt, true);
        autograd(b).backward(loss, { scale: 1 });
        grads().forEach(([n, g], k) => expectClose(g!, once[k], 1e-6, `grad of ${n} from a closure`));
      });

      it('optimizers.zeroGrad zero-fills gradients, or drops them with setToNone', async () => {
        const { b, opt, loss, grads } = await setup(6);
        autograd(b).backward(loss(), { scale: 1 });
        optimizers(b).zeroGrad(opt, false);
        for (const [n, g] of grads()) {
          expect(g, `grad of ${n} after zeroGrad(setToNone=false)`).not.toBeNull();
          expect(g!.every((v) => v === 0), `grad of ${n} is all zeros`).toBe(true);
        }
        autograd(b).backward(loss(), { scale: 1 });
        optimizers(b).zeroGrad(opt, true);
        for (const [n, g] of grads()) expect(g, `grad of ${n} after zeroGrad(setToNone=true)`).toBeNull();
      });

      it('state dicts round-trip through host tensors and backend tensors', async () => {
        const b = await getBackend();
        rng(b).manualSeed(11);
        const a = await fx.makeLinearModel(3, 2);
        rng(b).manualSeed(12);
        const c = await fx.makeLinearModel(3, 2);
        const params = (m: M) => models(b).namedParameters(m).map(([, p]) => values(b, p));
        expect(params(c)).not.toEqual(params(a));
        const hostState = Object.fromEntries(Object.entries(models(b).stateDict(a)).map(([k, v]) => [k, b.toHost(v)]));
        models(b).loadStateDict(c, hostState, { strict: true });
        expect(params(c)).toEqual(params(a));
        const x = b.fromHost(X);
        expect(values(b, fx.forward(c, x))).toEqual(values(b, fx.forward(a, x)));
        rng(b).manualSeed(13);
        const d = await fx.makeLinearModel(3, 2);
        models(b).loadStateDict(d, models(b).stateDict(a));
        expect(params(d)).toEqual(params(a));
      });

      it('strict loadStateDict rejects a missing key and names it; non-strict loads the rest', async () => {
        const b = await getBackend();
        rng(b).manualSeed(21);
        const src = await fx.makeLinearModel(3, 2);
        rng(b).manualSeed(22);
        const dst = await fx.makeLinearModel(3, 2);
        const hostState = Object.fromEntries(Object.entries(models(b).stateDict(src)).map(([k, v]) => [k, b.toHost(v)]));
        const keys = Object.keys(hostState);
        const dropped = keys[keys.length - 1];
        const partial = { ...hostState };
        delete partial[dropped];
        expect(() => models(b).loadStateDict(dst, partial, { strict: true })).toThrow(dropped);
        const before = Object.fromEntries(models(b).namedParameters(dst).map(([n, p]) => [n, values(b, p)]));
        models(b).loadStateDict(dst, partial, { strict: false });
        for (const [n, p] of models(b).namedParameters(dst)) {
          expect(values(b, p)).toEqual(n === dropped ? before[n] : numbers(hostState[n]));
        }
      });

      it('clipGradNorm returns the norm before clipping and scales gradients down to maxNorm', async () => {
        const { b, params, loss, grads } = await setup(7);
        autograd(b).backward(loss(), { scale: 1 });
        const g0 = grads().map(([, g]) => g!);
        const norm = Math.sqrt(g0.flat().reduce((s, v) => s + v * v, 0));
        expect(norm).toBeGreaterThan(0);
        const returned = autograd(b).clipGradNorm(params, norm / 2);
        expect(Math.abs(returned - norm) / norm).toBeLessThan(1e-5);
        const g1 = grads().map(([, g]) => g!);
        const after = Math.sqrt(g1.flat().reduce((s, v) => s + v * v, 0));
        expect(Math.abs(after - norm / 2) / norm).toBeLessThan(1e-4);
        g1.forEach((g, k) => expectClose(g, g0[k].map((v) => v / 2), 1e-4, 'clipped grad'));
        const again = autograd(b).clipGradNorm(params, norm * 10);
        expect(Math.abs(again - after) / norm).toBeLessThan(1e-5);
        grads().forEach(([, g], k) => expectClose(g!, g1[k], 1e-6, 'unclipped grad'));
      });
    });

    describe('optional capabilities', () => {
      itIfPresent(
        'precision.createGradScaler (if provided): clean steps step, inf/NaN skips and backs off, clean steps grow the scale',
        (b) => hasMethod(b.precision, 'createGradScaler'),
        'has no precision.createGradScaler()',
        async () => {
          const { b, model, opt, loss } = await setup(8);
          const scaler = b.precision!.createGradScaler!({ initScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2, enabled: true });
          expect(scaler.getScale()).toBe(1024);
          const snapshot = () => models(b).namedParameters(model).map(([, p]) => values(b, p));
          const iteration = (upstream: number): boolean => {
            optimizers(b).zeroGrad(opt, true);
            autograd(b).backward(scaler.scale(loss()), { scale: upstream });
            const stepped = scaler.step(opt);
            scaler.update();
            return stepped;
          };
          let p = snapshot();
          expect(iteration(1)).toBe(true);
          expect(snapshot()).not.toEqual(p);
          expect(scaler.getScale()).toBe(1024);
          expect(iteration(1)).toBe(true);
          expect(scaler.getScale()).toBe(2048);
          p = snapshot();
          expect(iteration(Number.NaN)).toBe(false);
          expect(snapshot()).toEqual(p);
          expect(scaler.getScale()).toBe(1024);
        },
      );

      itIfPresent(
        'precision.autocast (if provided) returns the callback result and propagates its errors',
        (b) => hasMethod(b.precision, 'autocast'),
        'has no precision.autocast()',
        (b) => {
          const autocast = b.precision!.autocast!.bind(b.precision);
          expect(autocast('bf16', () => 42)).toBe(42);
          expect(autocast('fp16', () => 'x', { enabled: false })).toBe('x');
          expect(() =>
            autocast('bf16', () => {
              throw new Error('inside autocast');
            }),
          ).toThrow('inside autocast');
        },
      );

      itIfPresent(
        'precision.wrapForwardForPrecision("no") and unwrapForwardForPrecision (if provided) keep the model object and its outputs',
        (b) => hasMethod(b.precision, 'wrapForwardForPrecision') && hasMethod(b.precision, 'unwrapForwardForPrecision'),
        'has no precision.wrapForwardForPrecision()/unwrapForwardForPrecision()',
        async () => {
          const { b, model } = await setup(9);
          const x = b.fromHost(X);
          const plain = values(b, fx.forward(model, x));
          expect(b.precision!.wrapForwardForPrecision!(model, 'no')).toBe(model);
          expect(values(b, fx.forward(model, x))).toEqual(plain);
          expect(b.precision!.unwrapForwardForPrecision!(model)).toBe(model);
          expect(values(b, fx.forward(model, x))).toEqual(plain);
        },
      );

      itIfPresent(
        'models.addGradientReadyHook (if provided) fires once per parameter per backward, with the accumulated gradient in place; remove() stops it',
        (b) => hasMethod(b.models, 'addGradientReadyHook'),
        'has no models.addGradientReadyHook()',
        async () => {
          const { b, model, loss, grads } = await setup(12);
          const named = models(b).namedParameters(model);
          const seen: Array<{ name: string; grad: number[] | null }> = [];
          const handles = named.map(([name, p]) =>
            models(b).addGradientReadyHook!(p, (param) => {
              const g = autograd(b).grad(param);
              seen.push({ name, grad: g === null ? null : values(b, g) });
            }),
          );
          autograd(b).backward(loss(), { scale: 1 });
          expect(seen.map((e) => e.name).sort()).toEqual(named.map(([n]) => n).sort());
          const after = new Map(grads());
          for (const e of seen) expect(e.grad, `gradient of ${e.name} when its hook ran`).toEqual(after.get(e.name));
          for (const h of handles) h.remove();
          autograd(b).backward(loss(), { scale: 1 });
          expect(seen.length, 'no calls after remove()').toBe(named.length);
        },
      );

      itIfPresent(
        'models.checkpointStateDict (if provided) gives host tensors that loadStateDict accepts back',
        (b) => hasMethod(b.models, 'checkpointStateDict'),
        'has no models.checkpointStateDict()',
        async (b) => {
          rng(b).manualSeed(31);
          const a = await fx.makeLinearModel(3, 2);
          rng(b).manualSeed(32);
          const c = await fx.makeLinearModel(3, 2);
          const state = models(b).checkpointStateDict!(a);
          for (const [k, v] of Object.entries(state)) expect(v instanceof HostTensor, `checkpointStateDict()[${JSON.stringify(k)}] is a HostTensor`).toBe(true);
          models(b).loadStateDict(c, state, { strict: true });
          const x = b.fromHost(X);
          expect(values(b, fx.forward(c, x))).toEqual(values(b, fx.forward(a, x)));
        },
      );

      itIfPresent(
        'models.namedChildren and ownTensors (if provided) walk to the same parameters as namedParameters',
        (b) => hasMethod(b.models, 'namedChildren') && hasMethod(b.models, 'ownTensors'),
        'has no models.namedChildren()/ownTensors() (the module tree big-modeling uses)',
        async (b) => {
          const m = models(b);
          const model = await fx.makeLinearModel(3, 2);
          const walked: Array<[string, T]> = [];
          const walk = (module: M, prefix: string) => {
            for (const [n, p] of m.ownTensors!(module).parameters) walked.push([prefix + n, p]);
            for (const [n, child] of m.namedChildren!(module)) walk(child, `${prefix}${n}.`);
          };
          walk(model, '');
          const named = m.namedParameters(model);
          expect(walked.map(([n]) => n).sort()).toEqual(named.map(([n]) => n).sort());
          const byName = new Map(walked);
          for (const [n, p] of named) expect(byName.get(n) === p, `ownTensors gives the very parameter object of ${n}`).toBe(true);
          if (hasMethod(m, 'moduleClassName')) {
            const cls = m.moduleClassName!(model);
            expect(typeof cls === 'string' && cls.length > 0, 'moduleClassName() is a non-empty string').toBe(true);
          }
        },
      );

      itIfPresent(
        'optimizers.stateDict/loadStateDict (if provided) round-trip after a step',
        (b) => hasMethod(b.optimizers, 'stateDict') && hasMethod(b.optimizers, 'loadStateDict'),
        'has no optimizers.stateDict()/loadStateDict()',
        async () => {
          const { b, opt, loss } = await setup(10);
          const o = optimizers(b);
          autograd(b).backward(loss(), { scale: 1 });
          o.step(opt);
          const plain = (v: unknown): unknown =>
            v instanceof HostTensor
              ? { dtype: v.dtype, shape: [...v.shape], data: numbers(v) }
              : Array.isArray(v)
                ? v.map(plain)
                : v !== null && typeof v === 'object'
                  ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
                  : v;
          const saved = await o.stateDict!(opt);
          await o.loadStateDict!(opt, saved);
          expect(plain(await o.stateDict!(opt))).toEqual(plain(saved));
        },
      );
    });
  });
}
