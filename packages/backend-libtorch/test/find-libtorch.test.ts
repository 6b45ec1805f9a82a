// How the install script finds libtorch and which flags it derives.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../scripts/find-libtorch.mjs', import.meta.url));
const run = (what: string, env: Record<string, string>) => {
  const clean = { ...process.env };
  delete clean.LIBTORCH;
  delete clean.TORCH_INSTALL_PREFIX;
  delete clean.ACCELERATE_LIBTORCH_CONFIG;
  return spawnSync(process.execPath, [script, what], { encoding: 'utf8', env: { ...clean, ...env } });
};

function fakeLibtorch(major: number, cuda: boolean): string {
  const root = mkdtempSync(join(tmpdir(), 'fake-libtorch-'));
  const vdir = join(root, 'include/torch/csrc/api/include/torch');
  mkdirSync(vdir, { recursive: true });
  writeFileSync(join(vdir, 'version.h'), `#define TORCH_VERSION_MAJOR ${major}\n#define TORCH_VERSION_MINOR 5\n#define TORCH_VERSION_PATCH 1\n`);
  mkdirSync(join(root, 'lib'));
  writeFileSync(join(root, 'lib/libtorch_cpu.so'), '');
  if (cuda) writeFileSync(join(root, 'lib/libtorch_cuda.so'), '');
  return root;
}

describe('find-libtorch', () => {
  it('LIBTORCH (2.x, CUDA): c++20, rpath, torch_cuda/c10_cuda kept with --no-as-needed, NCCL define', () => {
    const root = fakeLibtorch(2, true);
    const cfg = JSON.parse(run('json', { LIBTORCH: root }).stdout);
    expect(cfg).toMatchObject({ source: 'LIBTORCH', version: '2.5.1', major: 2, cuda: true, system: false, includeDir: join(root, 'include') });
    expect(run('cflags', { LIBTORCH: root }).stdout).toMatch(/-std=c\+\+20/);
    expect(run('ldflags', { LIBTORCH: root }).stdout.trim()).toBe(`-Wl,-z,now -L${root}/lib -Wl,-rpath,${root}/lib`);
    expect(run('libs', { LIBTORCH: root }).stdout.trim()).toBe('-Wl,--no-as-needed -ltorch -ltorch_cpu -ltorch_cuda -lc10 -lc10_cuda -Wl,--as-needed');
    expect(run('defines', { LIBTORCH: root }).stdout).toMatch(/USE_C10D_NCCL/);
  });

  it('TORCH_INSTALL_PREFIX (1.x CPU): c++17, plain libs', () => {
    const root = fakeLibtorch(1, false);
    expect(run('cflags', { TORCH_INSTALL_PREFIX: root }).stdout).toMatch(/-std=c\+\+17/);
    expect(run('libs', { TORCH_INSTALL_PREFIX: root }).stdout.trim()).toBe('-ltorch -ltorch_cpu -lc10');
    expect(run('defines', { TORCH_INSTALL_PREFIX: root }).stdout).not.toMatch(/NCCL/);
  });

  it('a LIBTORCH without the zip layout fails naming the variable', () => {
    const r = run('json', { LIBTORCH: '/nonexistent/libtorch' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/LIBTORCH=\/nonexistent\/libtorch has no include\/torch/);
  });

  it('nothing found: one message naming the three ways, with the apt line', () => {
    const r = run('json', { PYTHON: '', ACCELERATE_LIBTORCH_NO_SYSTEM: '1' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/LIBTORCH=/);
    expect(r.stderr).toMatch(/pip install torch/);
    expect(r.stderr).toMatch(/apt-get install -y libtorch-dev libgloo-dev libopenblas0/);
  });

  it("Debian's python3-torch resolves to the system layout (no rpath into dist-packages)", (ctx) => {
    if (!existsSync('/usr/lib/python3/dist-packages/torch/include') || !existsSync('/usr/bin/python3')) {
      console.log('[find-libtorch.test] skipped: no Debian python3-torch here');
      ctx.skip();
      return;
    }
    const cfg = JSON.parse(run('json', { PYTHON: '/usr/bin/python3' }).stdout);
    expect(cfg.source).toBe('python torch (/usr/bin/python3)');
    expect(cfg.includeDir).toBe('/usr/include');
    expect(cfg.system).toBe(true);
    expect(run('ldflags', { PYTHON: '/usr/bin/python3' }).stdout.trim()).toBe('-Wl,-z,now');
  });
});
