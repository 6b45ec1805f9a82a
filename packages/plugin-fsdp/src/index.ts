/**
 * `@accelerate/plugin-fsdp`: fully sharded data parallel as an accelerate-ts
 * strategy plugin.
 * @module
 */
export {};
