// The CPU allocator's counters (memory.info: allocated, peakAllocated, limit) and the
// memory limit (memory.setLimit, ACCELERATE_TORCH_CPU_MEMORY_LIMIT_MB).
import { describe, it, expect, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import * as torch from '../src/index.js';
import { LibtorchBackend } from '../src/backend.js';

const backend = new LibtorchBackend();
const mem = backend.memory;

afterEach(() => mem.setLimit('cpu', undefined));

describe('memory.info (cpu): the allocator count', () => {
  it('counts exactly the bytes of live storages, with a peak that resetPeak restarts', () => {
    const base = mem.info('cpu').allocated;
    const small = torch.empty([1000]); // 4000 bytes
    expect(mem.info('cpu').allocated - base).toBe(4000);
    const big = torch.empty([1 << 20], { dtype: 'float64' }); // 8 MiB
    expect(mem.info('cpu').allocated - base).toBe(4000 + 8 * (1 << 20));
    const view = big.narrow(0, 10, 100); // views hold no new storage
    expect(mem.info('cpu').allocated - base).toBe(4000 + 8 * (1 << 20));
    big.dispose();
    view.dispose();
    expect(mem.info('cpu').allocated - base).toBe(4000);
    expect(mem.info('cpu').peakAllocated! - base).toBeGreaterThanOrEqual(4000 + 8 * (1 << 20));
    mem.resetPeak!('cpu');
    expect(mem.info('cpu').peakAllocated).toBe(mem.info('cpu').allocated);
    small.dispose();
    expect(mem.info('cpu').allocated).toBe(base);
    expect(mem.info('cpu').limit).toBeUndefined();
  });
});

describe('memory.setLimit (cpu)', () => {
  it('makes allocations past the limit throw an out-of-memory error naming the limit; undefined removes it', () => {
    const base = mem.info('cpu').allocated;
    mem.setLimit!('cpu', base + (5 << 20));
    expect(mem.info('cpu').limit).toBe(base + (5 << 20));
    const ok = torch.empty([1 << 19]); // 2 MiB fits
    let caught: unknown;
    try {
      torch.empty([1 << 20]); // 4 MiB more does not
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(Error);
    expect((caught as Error).message).toMatch(/out of memory/);
    expect((caught as Error).message).toMatch(/limit of \d+ bytes/);
    expect((caught as Error).message).toMatch(/setLimit|ACCELERATE_TORCH_CPU_MEMORY_LIMIT_MB/);
    expect(mem.isOutOfMemoryError(caught)).toBe(true);
    // The failed allocation is not counted; ops that allocate fail the same way.
    expect(mem.info('cpu').allocated - base).toBe(2 << 20);
    const twice = ok.mul(2); // 2 more MiB still fit
    twice.dispose();
    expect(() => torch.cat([ok, ok, ok])).toThrow(/out of memory/);
    mem.setLimit!('cpu', undefined);
    expect(mem.info('cpu').limit).toBeUndefined();
    expect(torch.empty([1 << 20]).numel()).toBe(1 << 20);
    expect(() => mem.setLimit!('cpu', -1)).toThrow(/positive/);
  });

  it('reads ACCELERATE_TORCH_CPU_MEMORY_LIMIT_MB at load', () => {
    const here = dirname(fileURLToPath(import.meta.url));
    const script = `
      import { LibtorchBackend } from ${JSON.stringify(join(here, '../src/backend.ts'))};
      import * as torch from ${JSON.stringify(join(here, '../src/index.ts'))};
      const b = new LibtorchBackend();
      let msg = 'no error';
      try { torch.empty([4 << 20]); } catch (e) { msg = e.message; }
      console.log(JSON.stringify({ limit: b.memory.info('cpu').limit, msg }));
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, ACCELERATE_TORCH_CPU_MEMORY_LIMIT_MB: '8' },
      cwd: join(here, '../../..'),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.limit).toBe(8 * 1024 * 1024);
    expect(out.msg).toMatch(/out of memory.*limit of 8388608 bytes/);
  });
});
