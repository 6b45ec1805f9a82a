/**
 * Discovery entry of `@accelerate/trackers` (its package.json's
 * `accelerate.trackers`): `@accelerate/core` imports it when `logWith` names
 * a tracker nobody registered, and takes the classes it exports.
 * @module
 */
export { builtinTrackers as accelerateTrackers } from './builtins.js';
