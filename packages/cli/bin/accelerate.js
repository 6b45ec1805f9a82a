#!/usr/bin/env node
// The `accelerate` executable npm links. It lives outside dist/ so that `npm ci` on a
// fresh clone (before any build) still links node_modules/.bin/accelerate; the
// command itself is the compiled dist/bin.js.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(compiled)) {
  console.error('accelerate: @accelerate/cli is not built (no dist/bin.js): run `npm run build` in the repository first');
  process.exit(1);
}
await import(compiled.href);
