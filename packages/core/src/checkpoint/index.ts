/**
 * Checkpoint files without a backend: the safetensors format (lazy,
 * validated reads; atomic writes), Accelerate's `save_model` layout, and the
 * crash-safe `saveState` / `loadState` checkpoint folders with their
 * versioned manifest; sharded tensor sets (FSDP) and their merge.
 * @module
 */
export * from './safetensors.js';
export * from './save-model.js';
export * from './atomic.js';
export * from './manifest.js';
export * from './state.js';
export * from './sharded.js';
export {
  CHECKPOINTS_DIR,
  CHECKPOINT_NAME_PATTERN,
  CORE_PARTICIPANT_NAMES,
  PLUGINS_DIR,
  HookRegistry,
  automaticCheckpointDir,
  checkCheckpointable,
  customFileNames,
  listCheckpoints,
  randomStatesFileNames,
  writeManifest,
  type Checkpointable,
  type LoadStateHook,
  type LoadStateOptions,
  type LoadStateResult,
  type RemovableHandle,
  type SaveStateHook,
  type SaveStateOptions,
} from './save-state.js';
