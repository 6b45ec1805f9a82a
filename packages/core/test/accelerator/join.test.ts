// Accelerator.joinUnevenInputs on a single process (the multi-process behaviour, [B13],
// is tested with real gloo ranks in tests/launch-join.test.ts).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { ReferenceBackend, RegressionModel } from '../../src/testing/index.js';

const warnings: string[] = [];
const onWarning = (w: Error) => warnings.push(w.message);

beforeEach(async () => {
  await AcceleratorState.resetState();
  warnings.length = 0;
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});

describe('Accelerator.joinUnevenInputs on one process', () => {
  it('runs the function once and returns its result, with or without options, and warns about nothing', async () => {
    const acc = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {} });
    const [model] = await acc.prepare(new RegressionModel());
    let calls = 0;
    expect(await acc.joinUnevenInputs([model], () => ++calls)).toBe(1);
    expect(await acc.joinUnevenInputs(model, { evenBatches: false }, async () => ++calls)).toBe(2);
    await new Promise((r) => setImmediate(r));
    expect(warnings).toEqual([]);
  });

  it('rejects a missing function with a TypeError', async () => {
    const acc = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {} });
    await expect(acc.joinUnevenInputs([], { evenBatches: false } as never)).rejects.toThrow(/last argument must be the function/);
  });
});
