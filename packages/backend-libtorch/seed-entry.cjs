'use strict';
/**
 * `setSeed`'s synchronous route to libtorch (package.json
 * `accelerate.backend.seed`): @accelerate/core requires this module when
 * `setSeed` runs and calls `seedIfLoaded`, which seeds libtorch's default
 * generator (torch.manual_seed) when this package's native addon is already
 * loaded in this process and returns whether it did. It never loads the addon
 * (a process that does not use libtorch stays without it).
 */
const { realpathSync } = require('node:fs');
const { join, resolve } = require('node:path');

/** Where src/native.ts loads the addon from (src/ and dist/ both sit one level under this folder). */
function addonPath() {
  const path = resolve(process.env.ACCELERATE_TORCH_ADDON ?? join(__dirname, 'build/Release/torch_native.node'));
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** @param {number} seed @returns {boolean} whether libtorch was loaded, and so seeded */
exports.seedIfLoaded = function seedIfLoaded(seed) {
  const loaded = require.cache[addonPath()];
  if (!loaded) return false;
  loaded.exports.manualSeed(seed);
  return true;
};
