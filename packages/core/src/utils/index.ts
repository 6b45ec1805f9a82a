/**
 * Small utilities: sizes, environment, out-of-memory retry, logging, progress bars.
 * @module
 */
export * from './size.js';
export * from './environment.js';
export * from './memory.js';
export * from './logging.js';
export * from './progress.js';
