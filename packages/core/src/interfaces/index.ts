export * from './backend.js';
export * from './process-group.js';
export * from './plugin.js';
export * from './tracker.js';
