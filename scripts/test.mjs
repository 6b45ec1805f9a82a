#!/usr/bin/env node
// `npm test`: build every package, run the whole vitest suite, and end with
// one summary line "N passed, N failed, N skipped" that CI reads.
import { spawnSync } from 'node:child_process';
import { mkdirSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { summarize } from './summarize-tests.mjs';

// Interop tests find Python references here (scripts/setup-python.sh makes the venv).
const venvPython = resolve('.venv-py/bin/python');
if (!process.env.ACCELERATE_TS_PYTHON && existsSync(venvPython)) process.env.ACCELERATE_TS_PYTHON = venvPython;

const run = (cmd, args) => spawnSync(cmd, args, { stdio: 'inherit', env: process.env }).status ?? 1;

if (run('npm', ['run', 'build', '--silent']) !== 0) {
  console.log('0 passed, 1 failed, 0 skipped');
  console.error('build failed: see the output above');
  process.exit(1);
}
mkdirSync('test-results', { recursive: true });
const status = run('npx', [
  'vitest', 'run',
  '--reporter=default', '--reporter=json', '--outputFile.json=test-results/vitest.json',
  ...process.argv.slice(2),
]);
const { passed, failed, skipped } = summarize(['test-results/vitest.json']);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(status !== 0 || failed > 0 ? 1 : 0);
