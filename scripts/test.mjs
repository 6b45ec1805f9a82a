#!/usr/bin/env node
// `npm test`: build every package, run the whole vitest suite, and end with
// one summary line "N passed, N failed, N skipped" that CI reads.
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';

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
let passed = 0, failed = 0, skipped = 0;
try {
  const r = JSON.parse(readFileSync('test-results/vitest.json', 'utf8'));
  passed = r.numPassedTests;
  failed = r.numFailedTests + (r.numFailedTestSuites ?? 0);
  skipped = r.numPendingTests + r.numTodoTests;
} catch {
  failed = Math.max(failed, 1);
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(status !== 0 || failed > 0 ? 1 : 0);
