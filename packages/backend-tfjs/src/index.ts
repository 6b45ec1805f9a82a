/**
 * `@accelerate/backend-tfjs`: TensorFlow.js as an accelerate-ts backend — the
 * default that runs wherever `npm install` works (wasm, no compiler, no
 * libtorch), and tfjs-node(-gpu) when the user installs it.
 *
 * ```ts
 * import { Accelerator } from '@accelerate/core';
 * import { tf, tfjs, TfjsModule, Linear, adam } from '@accelerate/backend-tfjs';
 * const accelerator = new Accelerator({ backend: tfjs() });
 * const [model, opt] = await accelerator.prepare(net, adam(net, 1e-3));
 * accelerator.backward(() => tf.losses.softmaxCrossEntropy(y, model.forward(x)));
 * opt.step(); opt.zeroGrad();
 * ```
 * @packageDocumentation
 */
export { tf } from './tf.js';
export { TfjsBackend, tfjs, type TfjsBackendOptions, type TfjsModel } from './backend.js';
export {
  TFJS_ENGINES,
  TFJS_ENGINE_ENV,
  activeTfjsSelection,
  describeTfjsBackends,
  formatTfjsBackends,
  parseTfjsEngine,
  selectTfjsBackend,
  type SelectTfjsBackendOptions,
  type TfjsBackendsReport,
  type TfjsEngine,
  type TfjsEnginePreference,
  type TfjsEngineStatus,
  type TfjsSelection,
} from './engines.js';
export { registerWasmTransposedMatMul, unregisterWasmTransposedMatMul, isWasmTransposedMatMulRegistered } from './wasm-matmul.js';
export {
  accumulateGradients,
  clearGrads,
  discardRecording,
  gradOf,
  isRecording,
  noGrad,
  setGrad,
  startRecording,
  type GradientResult,
} from './autograd.js';
export { TfjsModule, Linear } from './module.js';
export { TfjsOptimizer, TfjsLambdaLR, sgd, momentum, adam, rmsprop, adagrad, type ParamSource } from './optim.js';
export { manualSeed, nextSeed, getRngState, setRngState, randomNormal, randomUniform, seededInitializer, type SeededInitializerName, type Initializer } from './rng.js';
export { layersModelWeights, isAutoNamed, type LayersModelWeight } from './layers-names.js';
export { registerFileRouters, fileSystemHandler } from './io.js';
export {
  tfjsStateDict,
  loadTfjsStateDict,
  saveTfjsWeights,
  loadTfjsWeights,
  permuteHost,
  type WeightLayout,
  type SaveTfjsWeightsOptions,
} from './checkpoint.js';
export { TfjsHostProcessGroup, initTfjsProcessGroup, tfjsMultiProcessSupport, GLOO_PACKAGE, type GlooImporter } from './distributed.js';

import type { tf as tfTypes } from './tf.js';
// Prepared DataLoaders yield tfjs tensors: type them so (see BackendTensorTypes).
declare module '@accelerate/core' {
  interface BackendTensorTypes {
    tfjs: tfTypes.Tensor;
  }
}
// Importing this package has no global effect: core finds the backend through package.json's
// `accelerate` field (./backend-entry.js); this package's generator takes a pending core
// setSeed at its next draw (core's takeSeed), so setSeed(0) before building a model works.
export { accelerateBackend } from './backend-entry.js';
