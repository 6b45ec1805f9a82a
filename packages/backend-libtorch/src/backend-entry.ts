/**
 * Discovery entry of `@accelerate/backend-libtorch` (its package.json's
 * `accelerate.backend.entry`): `@accelerate/core` registers the backend from
 * the package.json field and imports this module only when it resolves
 * "libtorch". Importing it loads nothing; the native addon is loaded by the
 * factory's `init()`, so a missing or broken addon becomes the `[libtorch] …`
 * line of core's "no available backend" error.
 * @module
 */
import type { BackendFactory, BackendModuleEntry } from '@accelerate/core';

const factory: BackendFactory = {
  init: async () => (await import('./backend.js')).libtorch().init(),
};

/** What discovery needs: the same name and priority as package.json says (10: preferred over tfjs). */
export const accelerateBackend = { name: 'libtorch', priority: 10, factory } as const satisfies BackendModuleEntry;
