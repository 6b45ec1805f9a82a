import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { openblasCoreType } from '../src/native.js';

const cpu = (flags: string) => `processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: ${flags}\n`;
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';
const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsx = createRequire(import.meta.url).resolve('tsx');

/**
 * OPENBLAS_CORETYPE as a fresh process sees it after importing the package, started
 * with exactly `env` for the OpenBLAS variables (whatever this test run inherited).
 */
function coreTypeAfterLoad(env: Record<string, string>): string {
  const clean = { ...process.env };
  delete clean.OPENBLAS_CORETYPE;
  delete clean.ACCELERATE_OPENBLAS_CORETYPE;
  const script = `import('${join(pkg, 'src/native.ts')}').then((m) => { void m.native; console.log('CORETYPE=' + (process.env.OPENBLAS_CORETYPE ?? '<unset>')); });`;
  const r = spawnSync(process.execPath, ['--import', tsx, '-e', script], { env: { ...clean, ...env }, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return /CORETYPE=(\S+)/.exec(r.stdout)?.[1] ?? '';
}

describe('OpenBLAS kernel selection', () => {
  it.runIf(onLinuxX64)('names the safe Haswell kernels with AVX2 + FMA, also with AVX-512, nothing below', () => {
    expect(openblasCoreType({}, cpu('fpu sse4_2 avx avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl'))).toBe('Haswell');
    expect(openblasCoreType({}, cpu('fpu sse4_2 avx avx2 fma avx512f'))).toBe('Haswell');
    expect(openblasCoreType({}, cpu('fpu sse4_2 avx avx2 fma'))).toBe('Haswell');
    expect(openblasCoreType({}, cpu('fpu sse4_2 avx'))).toBeUndefined();
    expect(openblasCoreType({}, 'no flags line')).toBeUndefined();
  });

  it('leaves an explicit OPENBLAS_CORETYPE alone and is off with ACCELERATE_OPENBLAS_CORETYPE=0', () => {
    const all = cpu('avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl');
    expect(openblasCoreType({ OPENBLAS_CORETYPE: 'Zen' }, all)).toBeUndefined();
    expect(openblasCoreType({ ACCELERATE_OPENBLAS_CORETYPE: '0' }, all)).toBeUndefined();
  });

  // In fresh processes: the environment this test run was started with (a machine may
  // set OPENBLAS_CORETYPE for all its processes) must not decide the outcome.
  it.runIf(onLinuxX64)('loading the addon sets OPENBLAS_CORETYPE from this CPU, keeps a value the user set, and is off with 0', () => {
    const expected = openblasCoreType({}, readFileSync('/proc/cpuinfo', 'utf8')) ?? '<unset>';
    expect(coreTypeAfterLoad({})).toBe(expected);
    expect(coreTypeAfterLoad({ OPENBLAS_CORETYPE: 'Prescott' })).toBe('Prescott');
    expect(coreTypeAfterLoad({ ACCELERATE_OPENBLAS_CORETYPE: '0' })).toBe('<unset>');
  });
});
