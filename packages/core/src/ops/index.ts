/**
 * Backend-independent tensor helpers and collectives on nested data.
 * @module
 */
export * from './tensor-ops.js';
export * from './float16.js';
export * from './structure.js';
export * from './object-codec.js';
export * from './collectives.js';
