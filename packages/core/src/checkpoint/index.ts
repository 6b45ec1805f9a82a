/**
 * Checkpoint files without a backend: the safetensors format (lazy,
 * validated reads; atomic writes) and Accelerate's `save_model` layout.
 * @module
 */
export * from './safetensors.js';
export * from './save-model.js';
