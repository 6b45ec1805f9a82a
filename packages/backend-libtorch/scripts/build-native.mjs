#!/usr/bin/env node
// Compile the native addon (build/Release/torch_native.node) against the libtorch
// that find-libtorch.mjs locates. Runs at `npm install` (the package's install script)
// and from `npm run build`.
//   --if-needed   skip when the addon is newer than every native source (fast no-op)
//   --clean       reconfigure from scratch
// Environment: LIBTORCH / TORCH_INSTALL_PREFIX, PYTHON, JOBS (parallel compiles),
// ACCELERATE_SKIP_NATIVE=1 (skip entirely, e.g. docs-only CI).
import { existsSync, readdirSync, statSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLibtorch, HOW_TO } from './find-libtorch.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addon = join(root, 'build/Release/torch_native.node');
const stampFile = join(root, 'build/libtorch.json');
const args = new Set(process.argv.slice(2));

if (process.env.ACCELERATE_SKIP_NATIVE === '1') {
  console.log('[backend-libtorch] ACCELERATE_SKIP_NATIVE=1: native addon not built');
  process.exit(0);
}

let cfg;
try {
  cfg = findLibtorch();
} catch (e) {
  console.error(`[backend-libtorch] ${e.message}`);
  process.exit(1);
}
if (!cfg) {
  console.error(`[backend-libtorch] no libtorch found.\n${HOW_TO}`);
  process.exit(1);
}

const inputs = [join(root, 'binding.gyp'), join(root, 'scripts/find-libtorch.mjs')];
for (const f of readdirSync(join(root, 'native'))) inputs.push(join(root, 'native', f));
const newest = Math.max(...inputs.map((f) => statSync(f).mtimeMs));
const sameConfig = existsSync(stampFile) && readFileSync(stampFile, 'utf8') === JSON.stringify(cfg);

if (args.has('--if-needed') && sameConfig && existsSync(addon) && statSync(addon).mtimeMs >= newest) {
  process.exit(0);
}

const require = createRequire(import.meta.url);
let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  console.error('[backend-libtorch] node-gyp is not installed (it is a dependency of this package): run npm install');
  process.exit(1);
}
const env = { ...process.env, ACCELERATE_LIBTORCH_CONFIG: JSON.stringify(cfg) };
const jobs = process.env.JOBS ?? 'max';
const run = (gypArgs) => {
  const r = spawnSync(process.execPath, [gyp, ...gypArgs], { cwd: root, stdio: 'inherit', env });
  return r.status ?? 1;
};

console.log(
  `[backend-libtorch] libtorch ${cfg.version} from ${cfg.source} (include ${cfg.includeDir}, lib ${cfg.libDir}${cfg.cuda ? ', CUDA' : ''})`,
);
const t0 = Date.now();
if (args.has('--clean')) rmSync(join(root, 'build'), { recursive: true, force: true });
const needConfigure = args.has('--clean') || !sameConfig || !existsSync(join(root, 'build/Makefile'));
if (needConfigure) {
  // Prefer headers next to the running node (no download; nodejs.org may be unreachable).
  const prefix = dirname(dirname(process.execPath));
  const nodedir =
    process.env.npm_config_nodedir ?? (existsSync(join(prefix, 'include/node/node_version.h')) ? prefix : undefined);
  const conf = ['configure', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  if (run(conf) !== 0) process.exit(1);
}
if (run(['build', '-j', jobs]) !== 0) {
  console.error('[backend-libtorch] native build failed (see the compiler output above).');
  process.exit(1);
}
mkdirSync(join(root, 'build'), { recursive: true });
writeFileSync(stampFile, JSON.stringify(cfg));
console.log(`[backend-libtorch] native addon built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
