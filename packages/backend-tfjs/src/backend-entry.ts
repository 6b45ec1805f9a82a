/**
 * Discovery entry of `@accelerate/backend-tfjs` (its package.json's
 * `accelerate.backend.entry`): `@accelerate/core` registers the backend from
 * the package.json field and imports this module only when it resolves
 * "tfjs". Importing it loads nothing; TensorFlow.js and its engine are loaded
 * by the factory's `init()`.
 * @module
 */
import type { BackendFactory, BackendModuleEntry } from '@accelerate/core';

const factory: BackendFactory = {
  init: async () => (await import('./backend.js')).tfjs().init(),
};

/** What discovery needs: the same name and priority as package.json says (5: libtorch, at 10, is preferred). */
export const accelerateBackend = { name: 'tfjs', priority: 5, factory } as const satisfies BackendModuleEntry;
