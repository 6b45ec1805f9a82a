export * from './accelerator.js';
export * from './configurations.js';
export * from './kwargs-handlers.js';
export * from './plugin-container.js';
export * from './seed.js';
export type { JoinUnevenInputsOptions } from './join.js';
export * from './backend-discovery.js';
export { wrapOptimizer, wrapScheduler, unwrapPrepared, optimizerStepState, type AcceleratedOptimizerMembers, type OptimizerStepState } from './wrappers.js';
export type { Prepared, BackendTensorTypes, DeviceTensor, OnDevice } from './prepared-types.js';
