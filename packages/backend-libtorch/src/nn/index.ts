/**
 * `nn`: modules, layers, initialisers and the functional API, as `torch.nn`.
 * @module
 */
export * from './module.js';
export * from './layers.js';
export * as functional from './functional.js';
export * as init from './init.js';
export * from './transformer.js';
