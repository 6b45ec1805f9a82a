export * from './backend-registry.js';
export * from './discovery.js';
