import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { openblasCoreType } from '../src/native.js';

const cpu = (flags: string) => `processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: ${flags}\n`;
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';

describe('OpenBLAS kernel selection', () => {
  it.runIf(onLinuxX64)('names SkylakeX with AVX-512 (F, CD, BW, DQ, VL), Haswell with AVX2 + FMA, nothing below', () => {
    expect(openblasCoreType({}, cpu('fpu sse4_2 avx avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl'))).toBe('SkylakeX');
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

  it.runIf(onLinuxX64)('loading the addon set OPENBLAS_CORETYPE from this CPU (unless the environment named one)', () => {
    // The package is loaded by the import above; an OPENBLAS_CORETYPE the test run was
    // started with is kept, else it matches what this machine's flags call for.
    const expected = openblasCoreType({}, readFileSync('/proc/cpuinfo', 'utf8'));
    expect(process.env.OPENBLAS_CORETYPE).toBe(process.env.ACCELERATE_OPENBLAS_CORETYPE === '0' ? undefined : expected);
  });
});
