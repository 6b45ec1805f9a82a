export * from './backend-registry.js';
