export * from './gradient-state.js';
export * from './distributed-type.js';
export * from './environment.js';
export * from './partial-state.js';
export * from './accelerator-state.js';
