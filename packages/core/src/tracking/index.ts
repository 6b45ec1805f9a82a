/**
 * Experiment tracking without a backend: the typed event stream, its JSONL
 * codec, the tracker registry and the `TrackerHub` the Accelerator owns.
 * Tracker implementations live in `@accelerate/trackers`.
 * @module
 */
export * from './events.js';
export * from './codec.js';
export * from './values.js';
export * from './registry.js';
export * from './hub.js';
