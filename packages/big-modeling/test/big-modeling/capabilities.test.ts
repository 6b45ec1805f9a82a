// Big-modeling on a backend without the module tree: one error naming the capability method, the backend and the feature.
import { describe, expect, it } from 'vitest';
import { ReferenceBackend, LinearModel } from '@accelerate/core/testing';
import { computeModuleSizes, initEmptyWeights, need } from '../../src/index.js';

describe('missing backend capabilities', () => {
  it('a models capability without the module tree: the error names models.<method>(), the backend and what needed it', () => {
    const backend = new ReferenceBackend();
    const model = new LinearModel(3, 2);
    expect(() => computeModuleSizes(backend, model)).toThrow(
      /^walking the module tree needs models\.namedChildren\(\), which the "reference" backend's "models" capability does not implement/,
    );
    expect(() => initEmptyWeights(backend, () => new LinearModel(3, 2))).toThrow(/^initOnDevice needs models\.initOnDevice\(\), which the "reference" backend/);
  });

  it('no models capability at all: the error names the capability', () => {
    const backend = new ReferenceBackend();
    (backend as { models?: unknown }).models = undefined;
    expect(() => need(backend, 'namedChildren', 'walking the module tree')).toThrow(
      /^walking the module tree needs the "models" capability .* which the "reference" backend does not provide/,
    );
  });

  it('root tensor methods are looked up on the backend itself', () => {
    const backend = new ReferenceBackend();
    expect(() => need(backend, 'emptyTensor', 'loading with a dtype')).toThrow(/^loading with a dtype needs Backend\.emptyTensor\(\), which the "reference" backend does not implement/);
  });
});
