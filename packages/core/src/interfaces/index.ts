export * from './backend.js';
export * from './process-group.js';
export * from './plugin.js';
export * from './tracker.js';
export * from './strategy.js';
export * from './checkpoint.js';
