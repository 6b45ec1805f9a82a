/**
 * Small utilities: sizes, environment, out-of-memory retry, logging.
 * @module
 */
export * from './size.js';
export * from './environment.js';
export * from './memory.js';
export * from './logging.js';
